import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize, resolve } from 'node:path';
import Long from 'long';
import { ModelError, type GroupReduction } from '@kvfold/core';
import { ElemType, onnx } from '@kvfold/onnx-graph';
import type onnxProto from 'onnx-proto';
import { exists, writeAtomic } from './files.js';

type ModelProto = onnxProto.onnx.IModelProto;
type NodeProto = onnxProto.onnx.INodeProto;

/**
 * Operators that compute attention inside one fused node: the attention probabilities never exist as a
 * tensor in the graph, so `attention_sums` cannot be derived from them.
 */
export const FUSED_ATTENTION_OPS: readonly string[] = [
  'Attention',
  'MultiHeadAttention',
  'GroupQueryAttention',
  'PackedAttention',
  'PackedMultiHeadAttention',
  'SparseAttention',
  'DecoderMaskedMultiHeadAttention',
  'DecoderMaskedSelfAttention',
  'DecoderAttention',
  'LongformerAttention',
  'PagedAttention',
  'QAttention',
];

/** The graph computes attention in a fused operator; kvfold cannot read attention out of it. */
export class FusedAttentionError extends ModelError {
  /**
   * Name the operator and the node.
   *
   * @param op - Operator type (with its domain when not the default one).
   * @param node - Node name (or its index when unnamed).
   */
  constructor(
    readonly op: string,
    readonly node: string,
  ) {
    super(
      `node "${node}" computes attention with the fused operator ${op}, so the attention probabilities never exist in the graph and attention_sums cannot be added. ` +
        'Export the model with plain MatMul/Softmax attention (Optimum without fused-attention optimizations, or `kvfold export-onnx`), ' +
        'or use a policy that needs no attention: full, window (sink + recent) or random.',
      { op, node, reason: 'fused-attention' },
    );
  }
}

/** Options of {@link exposeAttention}. */
export interface ExposeAttentionOptions {
  /** Reduction of a GQA group's query heads. Default `mean`. */
  readonly groupReduction?: GroupReduction;
}

/** What {@link exposeAttention} did. */
export interface ExposeAttentionResult {
  /** The rewritten model. */
  readonly model: Uint8Array;
  /** Layers whose attention got `attention_sums.{i}` and `attention_last.{i}` outputs. */
  readonly layers: number;
  /** Name of the Softmax node read for each layer. */
  readonly softmaxNodes: string[];
  /** External data files the model references (they must sit next to the written model). */
  readonly externalData: string[];
}

/** Ops a value passes through unchanged in content between the cache and attention's MatMul (shape, copy, repeat, cast). */
const PASS_THROUGH = new Set(['Reshape', 'Expand', 'Unsqueeze', 'Squeeze', 'Transpose', 'Identity', 'Cast', 'Tile', 'Flatten', 'Gather', 'Slice']);
/** Ops between the Softmax and the MatMul that reads it (dtype casts, inference-time dropout). */
const PROBS_THROUGH = new Set(['Cast', 'Identity', 'Dropout']);

/**
 * Rewrite a decoder graph in the plain-op layout (attention as `MatMul` → scale → mask → `Softmax` →
 * `MatMul`, as Hugging Face Optimum exports Llama-family models) to add outputs `attention_sums.{i}`
 * `[batch, kvHeads, total]`: each Softmax's probabilities (`[batch, heads, n, total]`, or any layout with the
 * queries second to last and heads batch-major before them) summed over the call's queries and reduced
 * over each GQA group, and `attention_last.{i}`, the same for the call's last query alone. Layer `i`'s
 * Softmax is the one whose probabilities multiply values that come from `present.{i}.value`. Nothing
 * else in the graph changes.
 * @throws FusedAttentionError naming the op and node when attention is fused; ModelError when the bytes
 *   are not an ONNX model, there are no `present.{i}.value` outputs, the graph already has
 *   `attention_sums`, or some layer's Softmax cannot be found.
 */
export function exposeAttention(bytes: Uint8Array, options: ExposeAttentionOptions = {}): ExposeAttentionResult {
  const reduction = options.groupReduction ?? 'mean';
  if (!['mean', 'max', 'sum'].includes(reduction)) throw new ModelError(`groupReduction must be "mean", "max" or "sum", got ${JSON.stringify(reduction)}`, { field: 'groupReduction', allowed: ['mean', 'max', 'sum'] });
  let model: ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (cause) {
    throw new ModelError(`not an ONNX model: ${(cause as Error).message}`, { reason: 'decode' }, cause);
  }
  const graph = model.graph;
  if (!graph?.node?.length) throw new ModelError('the ONNX model has no graph nodes', { reason: 'empty' });
  const nodes = graph.node;
  nodes.forEach((n, i) => {
    if (FUSED_ATTENTION_OPS.includes(n.opType ?? '')) throw new FusedAttentionError(n.domain ? `${n.domain}.${n.opType}` : n.opType!, n.name || `#${i}`);
  });
  const outputs = graph.output ?? [];
  if (outputs.some((o) => /^attention_(sums|last)\.\d+$/.test(o.name ?? ''))) throw new ModelError('the graph already has attention_sums outputs', { reason: 'exists' });
  const presentValue = new Map<string, number>();
  for (const o of outputs) {
    const m = /^present\.(\d+)\.value$/.exec(o.name ?? '');
    if (m) presentValue.set(o.name!, Number(m[1]));
  }
  if (presentValue.size === 0) throw new ModelError('the graph has no present.{i}.value outputs; expose-attention needs a decoder exported with its KV cache', { reason: 'no-cache' });
  const layers = presentValue.size;

  const producer = new Map<string, NodeProto>();
  const consumers = new Map<string, NodeProto[]>();
  for (const n of nodes) {
    for (const o of n.output ?? []) producer.set(o, n);
    for (const i of n.input ?? []) (consumers.get(i) ?? consumers.set(i, []).get(i)!).push(n);
  }
  // Walk back from a MatMul operand through shape-only ops to the present.{i}.value it repeats.
  const layerOf = (value: string): number | undefined => {
    let v = value;
    for (let hops = 0; hops < 32; hops++) {
      const hit = presentValue.get(v);
      if (hit !== undefined) return hit;
      const p = producer.get(v);
      if (!p || !PASS_THROUGH.has(p.opType ?? '') || !p.input?.[0]) return undefined;
      v = p.input[0];
    }
    return undefined;
  };
  const found = new Map<number, NodeProto>();
  for (const n of nodes) {
    if (n.opType !== 'Softmax' || n.domain) continue;
    const probs = n.output![0]!;
    const frontier = [probs];
    const seen = new Set<string>();
    while (frontier.length > 0) {
      const v = frontier.pop()!;
      if (seen.has(v)) continue;
      seen.add(v);
      for (const c of consumers.get(v) ?? []) {
        if (c.opType === 'MatMul' && c.input?.[0] === v) {
          const layer = layerOf(c.input[1]!);
          if (layer !== undefined) {
            if (found.has(layer)) throw new ModelError(`two Softmax nodes ("${found.get(layer)!.name}", "${n.name}") attend over present.${layer}.value`, { layer, reason: 'ambiguous' });
            found.set(layer, n);
          }
        } else if (PROBS_THROUGH.has(c.opType ?? '')) {
          frontier.push(c.output![0]!);
        }
      }
    }
  }
  const missing = [...presentValue.values()].filter((l) => !found.has(l)).sort((a, b) => a - b);
  if (missing.length > 0) {
    throw new ModelError(`no MatMul/Softmax attention over present.{i}.value found for layer${missing.length > 1 ? 's' : ''} ${missing.join(', ')}; expose-attention reads plain-op graphs (Softmax probabilities multiplying the cached values)`, { missing, reason: 'not-found' });
  }

  const opset = Number((model.opsetImport ?? []).find((o) => !o.domain)?.version ?? 0);
  const added: NodeProto[] = [];
  let counter = 0;
  const fresh = (hint: string): string => `kvfold_expose/${hint}_${counter++}`;
  const node = (opType: string, input: string[], attrs: onnxProto.onnx.IAttributeProto[] = [], out = fresh(opType)): string => {
    added.push({ opType, input, output: [out], name: fresh(`n${opType}`), attribute: attrs });
    return out;
  };
  const ints = (name: string, v: number[]): onnxProto.onnx.IAttributeProto => ({ name, type: onnx.AttributeProto.AttributeType.INTS, ints: v.map((x) => Long.fromNumber(x)) });
  const int = (name: string, v: number): onnxProto.onnx.IAttributeProto => ({ name, type: onnx.AttributeProto.AttributeType.INT, i: Long.fromNumber(v) });
  const i64 = (v: number[]): string =>
    node('Constant', [], [{ name: 'value', type: onnx.AttributeProto.AttributeType.TENSOR, t: { dims: [Long.fromNumber(v.length)], dataType: ElemType.int64, int64Data: v.map((x) => Long.fromNumber(x)) } }]);
  // ReduceSum took axes as an input from opset 13, the other reductions from opset 18.
  const reduce = (op: string, x: string, axis: number, out?: string): string =>
    (op === 'ReduceSum' ? opset >= 13 : opset >= 18)
      ? node(op, [x, i64([axis])], [int('keepdims', 0)], out)
      : node(op, [x], [ints('axes', [axis]), int('keepdims', 0)], out);
  const dim = (x: string, axis: number): string => node('Gather', [node('Shape', [x]), i64([axis])], [int('axis', 0)]);

  const softmaxNodes: string[] = [];
  const newOutputs: onnxProto.onnx.IValueInfoProto[] = [];
  const presentDims = (i: number) => outputs.find((o) => o.name === `present.${i}.key`)?.type?.tensorType?.shape?.dim ?? [];
  for (const [layer, sm] of [...found].sort((a, b) => a[0] - b[0])) {
    softmaxNodes.push(sm.name ?? '');
    const probs = sm.output![0]!;
    // Queries are always the second-to-last axis of the probabilities; whatever the head layout before it
    // ([B, QH], [B, KH, G] or [B * QH]), batch-major head order makes [B, KH, group, T] one Reshape away.
    const perHead = reduce('ReduceSum', probs, -2);
    const lastRow = reduce('ReduceSum', node('Slice', [probs, i64([-1]), i64([2 ** 62]), i64([-2])]), -2);
    const op = reduction === 'max' ? 'ReduceMax' : reduction === 'sum' ? 'ReduceSum' : 'ReduceMean';
    const pd = presentDims(layer);
    const shape = [pd[0] ?? { dimParam: 'batch_size' }, pd[1] ?? { dimParam: 'num_key_value_heads' }, pd[2] ?? { dimParam: 'total_sequence_length' }];
    for (const [rows, name] of [
      [perHead, `attention_sums.${layer}`],
      [lastRow, `attention_last.${layer}`],
    ] as const) {
      const grouped = node('Reshape', [rows, node('Concat', [dim(`present.${layer}.value`, 0), dim(`present.${layer}.value`, 1), i64([-1]), dim(rows, -1)], [int('axis', 0)])]); // [B, KH, G, T]
      // Softmax may run in float16 in a half-precision export; policies read float32.
      node('Cast', [reduce(op, grouped, 2)], [int('to', ElemType.float32)], name);
      newOutputs.push({ name, type: { tensorType: { elemType: ElemType.float32, shape: { dim: shape } } } });
    }
  }
  graph.node = [...nodes, ...added];
  graph.output = [...outputs, ...newOutputs];
  model.metadataProps = [...(model.metadataProps ?? []).filter((p) => p.key !== 'kvfold.attention_sums.group_reduction'), { key: 'kvfold.attention_sums.group_reduction', value: reduction }];
  const externalData = new Set<string>();
  for (const t of graph.initializer ?? []) for (const e of t.externalData ?? []) if (e.key === 'location' && e.value) externalData.add(e.value);
  return { model: onnx.ModelProto.encode(model).finish(), layers, softmaxNodes, externalData: [...externalData] };
}

/** What {@link exposeAttentionFile} did. */
export interface ExposeAttentionFileResult extends Omit<ExposeAttentionResult, 'model'> {
  /** The written model file. */
  readonly output: string;
  /** External data files copied next to the output (empty when it sits beside the input's). */
  readonly copied: string[];
}

/**
 * {@link exposeAttention} from file to file: the output is written atomically, and external data files
 * the model references are copied next to it when it goes to another folder (ONNX resolves them relative
 * to the model file).
 * @throws the errors of {@link exposeAttention}; ModelError when the input cannot be read or is the output.
 */
export async function exposeAttentionFile(input: string, output: string, options: ExposeAttentionOptions = {}): Promise<ExposeAttentionFileResult> {
  if (resolve(input) === resolve(output)) throw new ModelError('the output must differ from the input model', { field: 'output' });
  let bytes: Uint8Array;
  try {
    bytes = await readFile(input);
  } catch (cause) {
    throw new ModelError(`${input}: cannot read: ${(cause as Error).message}`, { file: input }, cause);
  }
  const { model, ...rest } = exposeAttention(bytes, options);
  await mkdir(dirname(resolve(output)), { recursive: true });
  const copied: string[] = [];
  if (resolve(dirname(input)) !== resolve(dirname(output))) {
    for (const f of rest.externalData) {
      if (isAbsolute(f) || normalize(f).startsWith('..')) throw new ModelError(`external data location ${JSON.stringify(f)} leaves the model's folder`, { file: f, reason: 'location' });
      const target = join(dirname(output), f);
      if (await exists(target)) continue;
      await copyFile(join(dirname(input), f), target);
      copied.push(target);
    }
  }
  await writeAtomic(output, model);
  return { ...rest, output, copied };
}
