import { KVFold, type KVFoldPlugin, type Logger } from '@kvfold/core';
import onnx from '@kvfold/backend-onnx';
import reference from '@kvfold/backend-reference';
import tfjs from '@kvfold/backend-tfjs';
import baselines from '@kvfold/policy-baselines';
import cam from '@kvfold/policy-cam';
import h2o from '@kvfold/policy-h2o';
import knorm from '@kvfold/policy-knorm';
import kvmerger from '@kvfold/policy-kvmerger';
import snapkv from '@kvfold/policy-snapkv';

/** Every plugin kvfold ships: the three backends and the six policy packages. */
export const BUILTIN_PLUGINS: readonly KVFoldPlugin[] = [reference, tfjs, onnx, baselines, h2o, cam, kvmerger, snapkv, knorm];

/** Options of {@link createKVFold}. */
export interface CreateKVFoldOptions {
  /** Plugin packages to load (resolved from `from`), e.g. the `plugins` of a config. */
  readonly plugins?: readonly string[];
  /** Directory whose node_modules resolves plugin packages; default the working directory. */
  readonly from?: string;
  /** Logger of the instance. */
  readonly logger?: Logger;
}

/**
 * A kvfold instance with every built-in plugin registered plus the named plugin packages loaded.
 * Policies are guarded by core's input checks.
 * @throws UnknownPluginError, InvalidPluginError, IncompatiblePluginError, NameClashError
 */
export async function createKVFold(options: CreateKVFoldOptions = {}): Promise<KVFold> {
  const kv = KVFold.create({ plugins: BUILTIN_PLUGINS, ...(options.logger ? { logger: options.logger } : {}) });
  if (options.plugins && options.plugins.length > 0) await kv.loadPlugins(options.plugins, options.from !== undefined ? { from: options.from } : {});
  return kv;
}
