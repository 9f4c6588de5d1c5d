import type { GatherCall, KernelImplementation, LayerCache } from '@kvfold/core';
import type { SessionCache } from '../cache.js';
import { attr, GraphBuilder, type NodeList } from '../graph.js';
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

/** Run a layer-producing session and wrap its five outputs as a layer. */
export function layerResult(r: OnnxTensor[]): LayerCache<OnnxTensor> {
  return { keys: r[0]!, values: r[1]!, positions: r[2]!, counts: r[3]!, scores: r[4]! };
}

/** The feeds of the five layer inputs. */
export function layerFeeds(layer: LayerCache<OnnxTensor>): Record<string, OnnxTensor> {
  return { keys: layer.keys, values: layer.values, positions: layer.positions, counts: layer.counts, scores: layer.scores };
}

/** The gather model: GatherND(batch_dims=1) of every field. */
export function gatherModel(): Uint8Array {
  const g = new GraphBuilder('gather');
  layerInputs(g);
  g.input('index', 'int32', ['H', 'K']);
  gatherRows(g, 'index', LAYER_FIELDS, LAYER_OUTPUTS);
  layerOutputs(g, 'K');
  return g.build();
}

/**
 * Gather every field of `layer` at int32 `index [kvHeads, k]`. Core has checked the index range: ONNX
 * wraps negative indices and ORT fails on large ones with a message naming graph internals.
 */
export function gather(cache: SessionCache): KernelImplementation<GatherCall<OnnxTensor>, LayerCache<OnnxTensor>> {
  return { run: ({ layer, index }) => layerResult(cache.get('gather', 'float32', gatherModel).run({ ...layerFeeds(layer), index }, LAYER_OUTPUTS)) };
}
