import type { BufferPool, GatherCall, KernelImplementation, LayerCache } from '@kvfold/core';
import { ort } from '../ort.js';
import type { SessionCache } from '../cache.js';
import { attr, GraphBuilder, type FunctionDef, type NodeList } from '../graph.js';
import type { OnnxTensor } from '../tensor.js';

/** Layer field names, in the order every layer-producing model outputs them. */
export const LAYER_FIELDS = ['keys', 'values', 'positions', 'counts', 'scores'] as const;
/** Output names of layer-producing models. */
export const LAYER_OUTPUTS = LAYER_FIELDS.map((f) => `${f}_out`);

/** Declare the five layer inputs of a model (dims `[H, L, D]` and `[H, L]`). */
export function layerInputs(g: GraphBuilder): void {
  g.input('keys', 'float32', ['H', 'L', 'D']);
  g.input('values', 'float32', ['H', 'L', 'D']);
  g.input('positions', 'int32', ['H', 'L']);
  g.input('counts', 'int32', ['H', 'L']);
  g.input('scores', 'float32', ['H', 'L']);
}

/** Declare the five layer outputs of a model with `out` slots per head. */
export function layerOutputs(g: GraphBuilder, out: string): void {
  g.output(LAYER_OUTPUTS[0]!, 'float32', ['H', out, 'D']);
  g.output(LAYER_OUTPUTS[1]!, 'float32', ['H', out, 'D']);
  g.output(LAYER_OUTPUTS[2]!, 'int32', ['H', out]);
  g.output(LAYER_OUTPUTS[3]!, 'int32', ['H', out]);
  g.output(LAYER_OUTPUTS[4]!, 'float32', ['H', out]);
}

/**
 * Per-head gather of rows `index` (int32 `[H, K]`) from `x` (`[H, L, ...]`) with GatherND(batch_dims=1):
 * one int64 `[H, K, 1]` index serves every field whatever its rank.
 */
export function gatherRows(b: NodeList, index: string, fields: readonly string[], names?: readonly string[]): string[] {
  const idx = b.unsqueeze(b.cast(index, 'int64'), [2]);
  return fields.map((f, i) => b.opN('GatherND', [f, idx], { batch_dims: attr.int(1) }, names ? { names: [names[i]!] } : {})[0]!);
}

/**
 * The five outputs of a layer-producing model with `slots` slots per head, preallocated from `pool`: ORT
 * writes into memory the backend reuses (a disposed layer's) instead of fresh memory it then copies.
 */
export function layerOutputTensors(pool: BufferPool, H: number, slots: number, D: number): OnnxTensor[] {
  return [
    outputTensor(pool, 'float32', [H, slots, D]),
    outputTensor(pool, 'float32', [H, slots, D]),
    outputTensor(pool, 'int32', [H, slots]),
    outputTensor(pool, 'int32', [H, slots]),
    outputTensor(pool, 'float32', [H, slots]),
  ];
}

/**
 * A pooled output tensor of one kernel (see {@link layerOutputTensors}): ORT writes it in place of an output
 * it would allocate and the binding would copy into a fresh array.
 */
export function outputTensor(pool: BufferPool, dtype: 'float32' | 'int32', dims: readonly number[]): OnnxTensor {
  const n = dims.reduce((a, b) => a * b, 1);
  return dtype === 'float32' ? new ort.Tensor('float32', pool.float32(n), dims) : new ort.Tensor('int32', pool.int32(n), dims);
}

/** Run a layer-producing session and wrap its five outputs as a layer. */
export function layerResult(r: OnnxTensor[]): LayerCache<OnnxTensor> {
  return { keys: r[0]!, values: r[1]!, positions: r[2]!, counts: r[3]!, scores: r[4]! };
}

/** The feeds of the five layer inputs. */
export function layerFeeds(layer: LayerCache<OnnxTensor>): Record<string, OnnxTensor> {
  return { keys: layer.keys, values: layer.values, positions: layer.positions, counts: layer.counts, scores: layer.scores };
}

/**
 * `ai.kvfold::GatherSlots(keys, values, positions, counts, scores, index) -> (keys, values, positions,
 * counts, scores)`: every field at int32 `index [H, K]`, per head.
 *
 * Body: GatherND(batch_dims=1) of each field. The native kernel copies each run of consecutive source
 * slots with one memcpy of whole rows (stock GatherND copies element-sized slices one index at a time).
 */
export const GATHER_SLOTS: FunctionDef = {
  name: 'GatherSlots',
  inputs: [...LAYER_FIELDS, 'index'],
  outputs: LAYER_OUTPUTS,
  body(b) {
    gatherRows(b, 'index', LAYER_FIELDS, LAYER_OUTPUTS);
  },
};

/** The gather model: one `ai.kvfold::GatherSlots` node. */
export function gatherModel(): Uint8Array {
  const g = new GraphBuilder('gather');
  layerInputs(g);
  g.input('index', 'int32', ['H', 'K']);
  g.custom(GATHER_SLOTS, [...LAYER_FIELDS, 'index'], {}, LAYER_OUTPUTS);
  layerOutputs(g, 'K');
  return g.build();
}

/**
 * Gather every field of `layer` at int32 `index [kvHeads, k]`. Core has checked the index range: ONNX
 * wraps negative indices and ORT fails on large ones with a message naming graph internals.
 */
export function gather(cache: SessionCache): KernelImplementation<GatherCall<OnnxTensor>, LayerCache<OnnxTensor>> {
  return {
    run: ({ layer, index, dims, k }) =>
      layerResult(cache.get('gather', 'float32', gatherModel).run({ ...layerFeeds(layer), index }, LAYER_OUTPUTS, layerOutputTensors(cache.pool, dims.heads, k, dims.headDim))),
  };
}
