import type { ArgCheck } from './kernel-check.js';
import type { HostTensor } from './tensor.js';

/**
 * Reads a tensor's contents on the host for content checks (index ranges, plan structure). It may
 * return a view of the backend's own memory: a check only reads it.
 */
export type HostReader = (tensor: unknown) => HostTensor;

/**
 * One kernel, declared once for every backend: its name, how its arguments are validated (shapes, dtypes,
 * options, and the contents of plans and indices, with the same messages everywhere) and its reference
 * implementation on host tensors. Backends implement it with {@link KernelImplementation}s; a backend
 * without one runs the reference through the host.
 *
 * `Args` are the arguments a caller passes, `Call` what validation turns them into (the arguments plus
 * their checked dimensions and resolved options), `Result` what the kernel returns.
 */
export interface KernelDefinition<Args extends readonly unknown[] = readonly unknown[], Call = unknown, Result = unknown> {
  /** Kernel name: a method of `KVKernels` for the built-in kernels, any unique name for a plugin's. */
  readonly name: string;
  /** One sentence: what the kernel computes. */
  readonly description: string;
  /**
   * Check the arguments with `check` (the backend's tensors are opaque here: only their shape and dtype
   * are read) and return the call every implementation receives.
   * @throws typed kvfold errors naming the argument.
   */
  validate(check: ArgCheck, ...args: Args): Call;
  /**
   * Check what only the tensors' contents can tell (indices in range, a plan's structure), on host copies
   * read with `read`. Runs before every implementation unless the implementation's `screen` vouches for
   * the contents. Throws the precise typed error for the first problem.
   */
  contents?(call: Call, read: HostReader): void;
  /** The ground truth: the kernel on host tensors (a `Call` whose tensors are `HostTensor`s). */
  reference(call: Call): Result;
}

/** A kernel definition with its types erased, as registries store it. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- erasure: every definition is assignable to it
export type AnyKernelDefinition = KernelDefinition<any, any, any>;

/** Declare a kernel; returns the definition unchanged (it exists to type-check the parts against each other). */
export function defineKernel<Args extends readonly unknown[], Call, Result>(definition: KernelDefinition<Args, Call, Result>): KernelDefinition<Args, Call, Result> {
  return definition;
}

/**
 * What an implementation's `screen` found: `valid` when the contents certainly pass the definition's
 * content checks (the host check is then skipped), and a `note` handed to `run` (facts the screen learnt
 * on the way, e.g. a maximum it had to compute anyway).
 */
export interface ScreenResult<Note = undefined> {
  /** True when the contents pass every content check. */
  readonly valid: boolean;
  /** Passed to `run`. */
  readonly note?: Note;
}

/**
 * A backend's implementation of one kernel: `run` receives the validated call. `screen` (optional) checks
 * the contents on the backend itself, for backends where reading them on the host costs a transfer; when
 * it reports them invalid, the definition's host check runs to name the problem.
 */
export interface KernelImplementation<Call = unknown, Result = unknown, Note = undefined> {
  /** Compute the kernel; its arguments are already valid. */
  run(call: Call, note?: Note): Result;
  /** Cheap content check on the backend; see {@link ScreenResult}. */
  screen?(call: Call): ScreenResult<Note>;
}

/** A kernel implementation with its types erased. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- erasure: every implementation is assignable to it
export type AnyKernelImplementation = KernelImplementation<any, any, any>;
