/** A float32 tensor as stored in a safetensors file. */
export interface NamedTensor {
  /** Row-major shape. */
  shape: number[];
  /** Values, length = product of shape. */
  data: Float32Array;
}

/** Parsed safetensors header entry. */
interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/**
 * Serialise float32 tensors to the safetensors format: u64 little-endian header size, JSON header
 * (padded with spaces to 8 bytes so data stays aligned), then the raw little-endian buffers in
 * name order. `metadata` goes under "__metadata__" (string values only, per the format).
 */
export function encodeSafetensors(tensors: Record<string, NamedTensor>, metadata?: Record<string, string>): Uint8Array {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const t = tensors[name];
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new RangeError(`safetensors: tensor ${name} has ${t.data.length} values but shape [${t.shape.join(', ')}]`);
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + n * 4] };
    offset += n * 4;
  }
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8 !== 0) json += ' ';
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  const base = 8 + headerBytes.length;
  for (const name of names) {
    const t = tensors[name];
    const [start] = (header[name] as HeaderEntry).data_offsets;
    for (let i = 0; i < t.data.length; i++) view.setFloat32(base + start + i * 4, t.data[i], true);
  }
  return out;
}

/** Parse a safetensors buffer holding F32 tensors. */
export function decodeSafetensors(bytes: Uint8Array): {
  /** Tensors by name. */
  tensors: Record<string, NamedTensor>;
  /** The header's `__metadata__` strings. */
  metadata: Record<string, string>;
} {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < 8) throw new RangeError('safetensors: buffer shorter than the 8-byte header size');
  const headerLen = Number(view.getBigUint64(0, true));
  if (8 + headerLen > bytes.byteLength) throw new RangeError('safetensors: header size exceeds buffer');
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen))) as Record<string, unknown>;
  const base = 8 + headerLen;
  const tensors: Record<string, NamedTensor> = {};
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = raw as Record<string, string>;
      continue;
    }
    const e = raw as HeaderEntry;
    if (e.dtype !== 'F32') throw new RangeError(`safetensors: tensor ${name} has dtype ${e.dtype}; only F32 is supported`);
    const [s, t] = e.data_offsets;
    const n = (t - s) / 4;
    if (n !== e.shape.reduce((a, b) => a * b, 1) || base + t > bytes.byteLength) throw new RangeError(`safetensors: tensor ${name} has inconsistent offsets`);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = view.getFloat32(base + s + i * 4, true);
    tensors[name] = { shape: e.shape, data };
  }
  return { tensors, metadata };
}
