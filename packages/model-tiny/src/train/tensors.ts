import { SafetensorsFile, type LoadedTensor } from '@kvfold/runtime';

/** A float32 tensor as training keeps it: shape and row-major values (the runtime's loaded-tensor shape). */
export type NamedTensor = LoadedTensor;

/**
 * Every tensor of an in-memory safetensors file, through @kvfold/runtime's reader (the one codec of the
 * project; it also reads f16/bf16 and checks offsets), with the file's `__metadata__`.
 */
export async function readTensors(bytes: Uint8Array, file: string): Promise<{ tensors: Record<string, NamedTensor>; metadata: Readonly<Record<string, string>> }> {
  const f = SafetensorsFile.fromBytes(bytes, file);
  const tensors: Record<string, NamedTensor> = {};
  for (const name of f.names()) tensors[name] = await f.read(name);
  return { tensors, metadata: f.header.metadata };
}
