import { createKVFold, kvfoldSchema, resolveBenchConfig } from '@kvfold/bench';
import { validateAgainst, type KVFoldConfig } from '@kvfold/core';
import { readJsonFile, type CliIO } from '../io.js';

/**
 * `kvfold validate <config>`: load the config's plugins, validate it against the composed schema, and
 * say what it would run. Exit 0 when valid; a ConfigError (exit 2) names every offending JSON path.
 */
export async function validateCommand(file: string, io: CliIO): Promise<number> {
  const document = readJsonFile(io, file);
  const plugins = (document as { plugins?: unknown } | null)?.plugins;
  const kv = await createKVFold({ ...(Array.isArray(plugins) && plugins.every((p) => typeof p === 'string') ? { plugins: plugins as string[] } : {}), from: io.cwd });
  const valid = validateAgainst<KVFoldConfig & { bench?: unknown }>(kvfoldSchema(kv), document, `config ${file}`);
  const lines: string[] = [];
  if (valid.policy) lines.push(`runtime config: policy ${valid.policy.name} at budget ${JSON.stringify(valid.policy.budget)} on backend ${valid.backend?.name ?? 'reference'}`);
  if (valid.bench !== undefined) {
    const config = resolveBenchConfig(kv, document);
    const labels = [...new Set(config.variants.map((v) => v.label))];
    lines.push(`benchmark config "${config.bench.name}": ${labels.length} policies (${labels.join(', ')}) x budgets ${config.bench.budgets.join(', ')} = ${config.variants.length} variants; suites: ${config.suites.join(', ') || '(none)'}; model: ${config.bench.model}`);
  }
  io.stdout.write(`${file}: valid\n${lines.map((l) => `  ${l}\n`).join('')}`);
  return 0;
}
