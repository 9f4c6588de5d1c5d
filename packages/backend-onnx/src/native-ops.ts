import type { FunctionDef } from './graph.js';
import { ACCUMULATE_SELECT } from './kernels/accumulateTopK.js';
import { ADJACENT_COSINE } from './kernels/adjacentCosine.js';
import { GATHER_SLOTS } from './kernels/gather.js';
import { MERGE_INTO_NEIGHBOURS } from './kernels/mergeIntoNeighbours.js';
import { MERGE_SEGMENTS } from './kernels/mergeSegments.js';
import { OBSERVE } from './kernels/observe.js';
import { SELECT_TOP_K } from './kernels/topK.js';
import { LINK_SEGMENTS } from './kernels/linkSegments.js';

/** Element type of a native op input or output, as `ort_ops.cc` spells it. */
export type NativeElem = 'F32' | 'I32' | 'I64';

/** One `ai.kvfold` custom op: its ONNX function (the body stock ORT runs) and what the native library must declare for it. */
export interface NativeOp {
  /** The op's model-local function: name, formal inputs, outputs and attributes. */
  readonly fn: FunctionDef;
  /** Stem of the C++ entry points in `kvfold_kernels.h`: `<stem>_cpu` and `<stem>_cuda`. */
  readonly stem: string;
  /** Element type of each input, in order (`kIn` of the op's struct in `ort_ops.cc`). */
  readonly inputs: readonly NativeElem[];
  /** Element type of each output, in order (`kOut`). */
  readonly outputs: readonly NativeElem[];
  /** Inputs the CUDA kernel reads from host memory (`host_input`): scalars it needs before launching. */
  readonly hostInputs: readonly number[];
}

/**
 * The one table of native ops. The native sources (`native/include/kvfold_kernels.h`,
 * `native/src/cpu_kernels.cc`, `native/src/cuda_kernels.cu`, `native/src/ort_ops.cc` and the standalone
 * GPU check `gpu/check.cu`) are C++ that cannot import it, so `test/native-ops.test.ts` reads them and
 * checks every op here is declared, defined, registered and GPU-checked with these types, and that they
 * hold no op this table lacks. Adding a native op starts here.
 */
export const NATIVE_OPS: readonly NativeOp[] = [
  { fn: ADJACENT_COSINE, stem: 'adjacent_cosine', inputs: ['F32'], outputs: ['F32'], hostInputs: [] },
  { fn: SELECT_TOP_K, stem: 'select_topk', inputs: ['F32', 'I64', 'I64', 'I64'], outputs: ['I32'], hostInputs: [1, 2, 3] },
  { fn: ACCUMULATE_SELECT, stem: 'accumulate_select', inputs: ['F32', 'F32', 'I64', 'I64', 'I64'], outputs: ['F32', 'I32'], hostInputs: [2, 3, 4] },
  { fn: LINK_SEGMENTS, stem: 'link_segments', inputs: ['I32', 'F32'], outputs: ['I32', 'I32'], hostInputs: [] },
  { fn: GATHER_SLOTS, stem: 'gather_slots', inputs: ['F32', 'F32', 'I32', 'I32', 'F32', 'I32'], outputs: ['F32', 'F32', 'I32', 'I32', 'F32'], hostInputs: [] },
  { fn: MERGE_SEGMENTS, stem: 'merge_segments', inputs: ['F32', 'F32', 'I32', 'I32', 'F32', 'I32', 'I32', 'F32'], outputs: ['F32', 'F32', 'I32', 'I32', 'F32'], hostInputs: [] },
  {
    fn: MERGE_INTO_NEIGHBOURS,
    stem: 'merge_into_neighbours',
    inputs: ['F32', 'F32', 'I32', 'I32', 'F32', 'I32', 'I32', 'I32', 'I32', 'F32'],
    outputs: ['F32', 'F32', 'I32', 'I32', 'F32'],
    hostInputs: [],
  },
  { fn: OBSERVE, stem: 'observe', inputs: ['F32', 'I32', 'I32', 'F32', 'I32', 'F32'], outputs: ['F32', 'F32'], hostInputs: [5] },
];
