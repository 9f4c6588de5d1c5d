import { SUITE_NAMES, createKVFold } from '@kvfold/bench';
import type { JsonSchema } from '@kvfold/core';
import type { CliIO } from '../io.js';

/** One option of a schema, flattened for display. */
export interface OptionRow {
  /** Option name. */
  readonly name: string;
  /** Type, enum values or shape. */
  readonly type: string;
  /** Default, JSON-encoded, or empty. */
  readonly default: string;
  /** Bounds, when the schema has them. */
  readonly range: string;
  /** The schema's description. */
  readonly description: string;
}

function typeOf(s: Record<string, unknown>): string {
  if (Array.isArray(s.enum)) return (s.enum as unknown[]).map((v) => JSON.stringify(v)).join(' | ');
  if (s.const !== undefined) return JSON.stringify(s.const);
  const variants = (s.oneOf ?? s.anyOf) as Record<string, unknown>[] | undefined;
  if (Array.isArray(variants)) return variants.map(typeOf).join(' | ');
  if (Array.isArray(s.type)) return (s.type as string[]).join(' | ');
  if (typeof s.type === 'string') return s.type === 'array' && s.items ? `${typeOf(s.items as Record<string, unknown>)}[]` : s.type;
  if (s.properties) return 'object';
  return 'any';
}

function rangeOf(s: Record<string, unknown>): string {
  const lo = s.exclusiveMinimum !== undefined ? `> ${String(s.exclusiveMinimum)}` : s.minimum !== undefined ? `>= ${String(s.minimum)}` : '';
  const hi = s.exclusiveMaximum !== undefined ? `< ${String(s.exclusiveMaximum)}` : s.maximum !== undefined ? `<= ${String(s.maximum)}` : '';
  return [lo, hi].filter(Boolean).join(', ');
}

/** The top-level options of an option schema, one row each. */
export function optionRows(schema: JsonSchema): OptionRow[] {
  const props = (schema.properties ?? {}) as Record<string, Record<string, unknown>>;
  return Object.entries(props).map(([name, s]) => ({
    name,
    type: typeOf(s),
    default: s.default !== undefined ? JSON.stringify(s.default) : '',
    range: rangeOf(s),
    description: typeof s.description === 'string' ? s.description : '',
  }));
}

/**
 * `kvfold list [--json]`: registered policies and backends with their option schemas, the plugins that
 * contributed them, and the benchmark suites.
 */
export async function listCommand(json: boolean, plugins: readonly string[], io: CliIO): Promise<number> {
  const kv = await createKVFold({ plugins, from: io.cwd });
  const policies = kv.policies.list().map(({ definition: d, owner }) => ({ name: d.name, plugin: owner, description: d.description, schema: d.schema }));
  const backends = kv.backends.list().map(({ definition: d, owner }) => ({ name: d.name, plugin: owner, description: d.description, schema: d.schema }));
  if (json) {
    io.stdout.write(`${JSON.stringify({ policies, backends, plugins: kv.plugins(), suites: SUITE_NAMES }, null, 2)}\n`);
    return 0;
  }
  const out: string[] = [];
  const section = (title: string, entries: typeof policies): void => {
    out.push(`${title}:`);
    for (const e of entries) {
      out.push(`  ${e.name}  (${e.plugin})`, `    ${e.description}`);
      const rows = optionRows(e.schema);
      if (rows.length === 0) out.push('    options: none');
      else {
        out.push('    options:');
        const w = Math.max(...rows.map((r) => r.name.length));
        for (const r of rows) out.push(`      ${r.name.padEnd(w)}  ${r.type}${r.default ? `  default ${r.default}` : ''}${r.range ? `  (${r.range})` : ''}${r.description ? `\n      ${' '.repeat(w)}  ${r.description}` : ''}`);
      }
    }
    out.push('');
  };
  section('policies', policies);
  section('backends', backends);
  out.push('plugins:', ...kv.plugins().map((p) => `  ${p}`), '');
  out.push(`benchmark suites: ${SUITE_NAMES.join(', ')}`, '');
  io.stdout.write(out.join('\n'));
  return 0;
}
