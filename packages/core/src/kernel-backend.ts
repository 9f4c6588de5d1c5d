import type { TensorInspector } from './kernel-check.js';
import type { AnyKernelImplementation, KernelImplementation } from './kernel-definition.js';
import type { LayerCache, ObservedAttention, SegmentPlan, SimilarMerge } from './kernels.js';
import type {
  AccumulateCall,
  AdjacentCosineCall,
  AllFiniteCall,
  AppendCall,
  GatherCall,
  KeyNormsCall,
  LinkSegmentsCall,
  MergeIntoNeighboursCall,
  MergeSegmentsCall,
  MergeSimilarCall,
  ObserveCall,
  TopKCall,
} from './kernels/index.js';
import type { HostAllocator } from './kernels/host.js';
import type { HostTensor } from './tensor.js';

/**
 * A backend's implementations of the built-in kernels, keyed by kernel name; each receives the call its
 * definition validated. Any kernel left out runs the reference through the host (logged once, with its
 * cost). Keys other than the built-in names implement kernels that plugins define.
 */
export interface KernelImplementations<T> {
  /** See `KVKernels.allFinite`. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the note type is the implementation's own
  readonly allFinite?: KernelImplementation<AllFiniteCall<T>, boolean | Promise<boolean>, any>;
  /** See `KVKernels.append`. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
  readonly append?: KernelImplementation<AppendCall<T>, LayerCache<T>, any>;
  /** See `KVKernels.accumulate`. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
  readonly accumulate?: KernelImplementation<AccumulateCall<T>, T, any>;
  /** See `KVKernels.topK`. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
  readonly topK?: KernelImplementation<TopKCall<T>, T, any>;
  /** See `KVKernels.gather`. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
  readonly gather?: KernelImplementation<GatherCall<T>, LayerCache<T>, any>;
  /** See `KVKernels.adjacentCosine`. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
  readonly adjacentCosine?: KernelImplementation<AdjacentCosineCall<T>, T, any>;
  /** See `KVKernels.keyNorms`. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
  readonly keyNorms?: KernelImplementation<KeyNormsCall<T>, T, any>;
  /** See `KVKernels.linkSegments`. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
  readonly linkSegments?: KernelImplementation<LinkSegmentsCall<T>, Pick<SegmentPlan<T>, 'segment' | 'pivot'>, any>;
  /** See `KVKernels.mergeSegments`. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
  readonly mergeSegments?: KernelImplementation<MergeSegmentsCall<T>, LayerCache<T>, any>;
  /** See `KVKernels.mergeSimilar`. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
  readonly mergeSimilar?: KernelImplementation<MergeSimilarCall<T>, SimilarMerge<T>, any>;
  /** See `KVKernels.mergeIntoNeighbours`. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
  readonly mergeIntoNeighbours?: KernelImplementation<MergeIntoNeighboursCall<T>, LayerCache<T>, any>;
  /** See `KVKernels.observe`. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
  readonly observe?: KernelImplementation<ObserveCall<T>, ObservedAttention<T>, any>;
  /** Implementations of kernels that plugins define. */
  readonly [kernel: string]: AnyKernelImplementation | undefined;
}

/**
 * What a backend provides: moving tensors between the host and itself, saying what a value is, and its
 * kernel implementations. Core turns it into `KVKernels` with {@link bindKernels}, which validates every
 * kernel call before it reaches the backend, so a backend never checks arguments itself.
 */
export interface KernelBackend<T = unknown> {
  /** Registry name of the backend (`reference`, `tfjs`, `onnx`, ...). */
  readonly name: string;
  /** Human-readable description of what actually runs (engine, execution provider, native or not). */
  describe(): string;
  /** The shape and dtype of a live tensor of this backend, or why `value` is not one (see {@link TensorInspector}). */
  readonly inspect: TensorInspector;
  /** Copy a host tensor (already checked by core: float32/int32, data fills the shape) into the backend; never alias its data. */
  fromHost(tensor: HostTensor): T;
  /** Copy a live tensor back to host memory (a copy the caller may edit). */
  toHost(tensor: T): Promise<HostTensor>;
  /**
   * Read a live tensor's contents synchronously, for content checks and reference fallbacks. It may return
   * a view of the backend's memory: callers only read it.
   */
  read(tensor: T): HostTensor;
  /**
   * True when {@link read} returns the tensor's own memory and writes to it are allowed: in-place decode
   * eviction (`KVKernels.hostView`) then moves single rows instead of copying the cache. Set it only when
   * no two tensors share memory (the reference backend, the onnx backend's CPU tensors). tfjs, whose
   * tensors may share memory and whose wasm heap moves when it grows, leaves this unset and offers
   * {@link view} instead.
   */
  readonly writable?: boolean;
  /**
   * For backends whose {@link read} copies but whose tensors do live in host-addressable memory (tfjs on
   * its wasm engine): a view of the tensor's own memory for the in-place decode path
   * (`KVKernels.editView`), valid only until the backend next allocates (a growing WebAssembly heap moves).
   * With `write` true, undefined when another tensor shares the memory (a tfjs reshape of it), so an
   * edit could never reach a tensor its caller did not hand over; undefined too when the tensor cannot be
   * viewed. Backends with {@link writable} need not set it: their `read` serves.
   */
  view?(tensor: T, write: boolean): HostTensor | undefined;
  /** Release live or disposed tensors of this backend; disposing twice is harmless. */
  dispose(tensors: readonly T[]): void;
  /**
   * True when `T` is core's `HostTensor` itself (the reference backend): kernels without an
   * implementation then run the reference directly, with no transfer and no warning.
   */
  readonly hostTensors?: boolean;
  /**
   * With {@link hostTensors}: where the reference implementations get the arrays they return (the reference
   * backend recycles the buffers of disposed tensors). Default fresh arrays.
   */
  readonly allocator?: HostAllocator;
  /** The kernels this backend implements. */
  readonly kernels?: KernelImplementations<T>;
  /**
   * Extra members copied onto the `KVKernels` object (e.g. the tfjs engine in use, or the onnx backend's
   * runtime info and fused kernels), so `kv.backend(name)` returns them too.
   */
  readonly extensions?: Readonly<Record<string, unknown>>;
}

/** Declare a backend's tensor type and implementations; returns the object unchanged. */
export function defineKernelBackend<T>(backend: KernelBackend<T>): KernelBackend<T> {
  return backend;
}
