import type { KernelBackend } from './kernel-backend.js';
import type { Logger } from './logger.js';
import type { JsonSchema } from './policy.js';

/** Services a backend factory receives. */
export interface BackendServices {
  /** Where the backend reports what it chose (engine, provider, fallbacks). */
  readonly logger: Logger;
}

/**
 * How a backend is registered: its name, option schema and an async factory of its {@link KernelBackend}
 * (tensor transfers and kernel implementations). `KVFold.backend` validates the options, creates it and
 * binds it to the instance's kernel registry, so callers get validated `KVKernels`.
 */
export interface BackendDefinition<Options = Record<string, unknown>> {
  /** Registry name (`reference`, `tfjs`, `onnx`, ...). */
  readonly name: string;
  /** One sentence on what it runs on. */
  readonly description: string;
  /** JSON Schema of the options object, with defaults. */
  readonly schema: JsonSchema;
  /** Create the backend; may load engines or native libraries, so it is async. */
  create(options: Options, services: BackendServices): Promise<KernelBackend<unknown>>;
}

/** Declare a backend definition with its options type checked; returns it unchanged. */
export function defineBackend<Options>(definition: BackendDefinition<Options>): BackendDefinition<Options> {
  return definition;
}
