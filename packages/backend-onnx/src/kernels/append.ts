import type { AppendCall, KernelImplementation, LayerCache } from '@kvfold/core';
import type { SessionCache } from '../cache.js';
import { attr, GraphBuilder } from '../graph.js';
import type { OnnxTensor } from '../tensor.js';

const OUT = ['keys_out', 'values_out', 'positions_out', 'counts_out', 'scores_out'] as const;

/** The append model: Concat along the slot axis; new slots get count 1 and score 0 (ConstantOfShape). */
export function appendModel(): Uint8Array {
  const g = new GraphBuilder('append');
  const k = g.input('keys', 'float32', ['H', 'L', 'D']);
  const v = g.input('values', 'float32', ['H', 'L', 'D']);
  const p = g.input('positions', 'int32', ['H', 'L']);
  const c = g.input('counts', 'int32', ['H', 'L']);
  const s = g.input('scores', 'float32', ['H', 'L']);
  const nk = g.input('new_keys', 'float32', ['H', 'N', 'D']);
  const nv = g.input('new_values', 'float32', ['H', 'N', 'D']);
  const np = g.input('new_positions', 'int32', ['H', 'N']);
  const newShape = g.shape(np);
  g.opN('Concat', [k, nk], { axis: attr.int(1) }, { names: [OUT[0]] });
  g.opN('Concat', [v, nv], { axis: attr.int(1) }, { names: [OUT[1]] });
  g.opN('Concat', [p, np], { axis: attr.int(1) }, { names: [OUT[2]] });
  g.opN('Concat', [c, g.fill(newShape, 'int32', 1)], { axis: attr.int(1) }, { names: [OUT[3]] });
  g.opN('Concat', [s, g.fill(newShape, 'float32', 0)], { axis: attr.int(1) }, { names: [OUT[4]] });
  g.output(OUT[0], 'float32', ['H', 'M', 'D']);
  g.output(OUT[1], 'float32', ['H', 'M', 'D']);
  g.output(OUT[2], 'int32', ['H', 'M']);
  g.output(OUT[3], 'int32', ['H', 'M']);
  g.output(OUT[4], 'float32', ['H', 'M']);
  return g.build();
}

/** Append `n` tokens to every head (see KVKernels.append). */
export function append(cache: SessionCache): KernelImplementation<AppendCall<OnnxTensor>, LayerCache<OnnxTensor>> {
  return { run: (call) => concat(cache, call) };
}

function concat(cache: SessionCache, { layer, keys, values, positions }: AppendCall<OnnxTensor>): LayerCache<OnnxTensor> {
  const r = cache.get('append', 'float32', appendModel).run(
    {
      keys: layer.keys,
      values: layer.values,
      positions: layer.positions,
      counts: layer.counts,
      scores: layer.scores,
      new_keys: keys,
      new_values: values,
      new_positions: positions,
    },
    OUT,
  );
  return { keys: r[0]!, values: r[1]!, positions: r[2]!, counts: r[3]!, scores: r[4]! };
}
