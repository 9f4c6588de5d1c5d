import { createKVFold, kvfoldSchema, resolveBenchConfig } from '@kvfold/bench';
import { ConfigError, validateAgainst, type KVFoldConfig } from '@kvfold/core';
import { readJsonFile, type CliIO } from '../io.js';

/** Options of `kvfold validate`. */
export interface ValidateOptions {
  /** Import the plugin packages the config lists (default: import nothing, check with the built-in plugins only). */
  readonly loadPlugins?: boolean;
}

/**
 * `kvfold validate <config>`: validate a config against the composed schema and say what it would run.
 * It imports nothing unless `loadPlugins` is set: a config that lists plugins is then checked against the
 * built-in policies and backends, and an error about a name they lack says to rerun with --load-plugins.
 * Exit 0 when valid; a ConfigError (exit 2) names every offending JSON path.
 */
export async function validateCommand(file: string, io: CliIO, options: ValidateOptions = {}): Promise<number> {
  const document = readJsonFile(io, file);
  const raw = (document as { plugins?: unknown } | null)?.plugins;
  const plugins = Array.isArray(raw) && raw.every((p) => typeof p === 'string') ? (raw as string[]) : [];
  const load = options.loadPlugins === true && plugins.length > 0;
  const kv = await createKVFold({ ...(load ? { plugins } : {}), from: io.cwd });
  let valid: KVFoldConfig & { bench?: unknown };
  const lines: string[] = [];
  try {
    valid = validateAgainst<KVFoldConfig & { bench?: unknown }>(kvfoldSchema(kv), document, `config ${file}`);
    if (valid.bench !== undefined) {
      const config = resolveBenchConfig(kv, document, file);
      const labels = [...new Set(config.variants.map((v) => v.label))];
      lines.push(`benchmark config "${config.bench.name}": ${labels.length} policies (${labels.join(', ')}) x budgets ${config.bench.budgets.join(', ')} = ${config.variants.length} variants; suites: ${config.suites.join(', ') || '(none)'}; model: ${config.bench.model}`);
    }
  } catch (e) {
    if (e instanceof ConfigError && plugins.length > 0 && !load) {
      throw new ConfigError(
        [...e.issues, { path: '/plugins', rule: 'notLoaded', message: `the plugins ${plugins.map((p) => JSON.stringify(p)).join(', ')} were not imported, so only built-in policies and backends are known; rerun with --load-plugins to import them and check their options` }],
        `config ${file}`,
      );
    }
    throw e;
  }
  if (valid.policy) lines.unshift(`runtime config: policy ${valid.policy.name} at budget ${JSON.stringify(valid.policy.budget)} on backend ${valid.backend?.name ?? 'reference'}`);
  if (plugins.length > 0 && !load) lines.push(`plugins ${plugins.join(', ')} not imported (pass --load-plugins to import them)`);
  io.stdout.write(`${file}: valid\n${lines.map((l) => `  ${l}\n`).join('')}`);
  return 0;
}
