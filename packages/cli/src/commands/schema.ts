import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createKVFold, kvfoldSchema } from '@kvfold/bench';
import type { CliIO } from '../io.js';

/**
 * `kvfold schema [--out file]`: write the composed configuration schema (every registered policy's and
 * backend's options, plus the bench section) to `file` (default ./kvfold.schema.json; `-` = stdout).
 */
export async function schemaCommand(out: string | undefined, plugins: readonly string[], io: CliIO): Promise<number> {
  const kv = await createKVFold({ plugins, from: io.cwd });
  const text = `${JSON.stringify(kvfoldSchema(kv), null, 2)}\n`;
  if (out === '-') {
    io.stdout.write(text);
    return 0;
  }
  const file = resolve(io.cwd, out ?? 'kvfold.schema.json');
  writeFileSync(file, text);
  io.stderr.write(`kvfold: wrote ${file}\n`);
  return 0;
}
