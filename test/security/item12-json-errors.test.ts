// Issue 10, item 12: a bad JSON config names the file, line and column; a missing file is "not found".
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from 'kvfold';
import { ErrorCode, locateJsonError, parseJson } from '@kvfold/core';
import { caught, temp } from './helpers.js';

async function run(args: string[], cwd: string): Promise<{ code: number; err: string }> {
  const err: string[] = [];
  const code = await main(args, { cwd, stdout: { write: () => undefined }, stderr: { write: (s: string) => err.push(s) } });
  return { code, err: err.join('') };
}

describe('item 12: JSON config errors', () => {
  it('bench --config and validate name the file, the line and the column of a syntax error', async () => {
    const dir = temp();
    const file = join(dir, 'bad.json');
    writeFileSync(file, '{\n  "bench": {\n    "budgets": [0.5,, 0.2]\n  }\n}\n');
    for (const cmd of [['bench', '--config', 'bad.json'], ['validate', 'bad.json']]) {
      const r = await run(cmd, dir);
      expect(r.code).toBe(2);
      expect(r.err).toContain(`${file}:3:21: not valid JSON: expected a value, found ","`);
    }
  });

  it('schema errors of bench --config name the file', async () => {
    const dir = temp();
    writeFileSync(join(dir, 'c.json'), JSON.stringify({ bench: { budgets: [2] } }));
    const r = await run(['bench', '--config', 'c.json'], dir);
    expect(r.code).toBe(2);
    expect(r.err).toContain('benchmark config c.json is invalid');
  });

  it('a missing config file is KVF_NOT_FOUND, "not found", exit 2', async () => {
    const dir = temp();
    const r = await run(['bench', '--config', 'nope.json'], dir);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`[${ErrorCode.NotFound}]: config file ${join(dir, 'nope.json')} not found`);
    expect(r.err).not.toMatch(/invalid/);
    expect((await run(['validate', 'nope.json'], dir)).err).toContain('not found');
  });

  it('the locator agrees with JSON.parse on what is valid, and finds line and column', async () => {
    for (const ok of ['{}', '[1, 2.5e-3, "a\\u00e9", true, false, null, {"a": [[]]}]', ' 0 ', '"\\n"']) {
      expect(() => JSON.parse(ok)).not.toThrow();
      expect(locateJsonError(ok)).toBeUndefined();
    }
    for (const [bad, line, column] of [['{"a": 1,}', 1, 9], ['[1 2]', 1, 4], ['{\n"a"\n:\n01}', 4, 2], ['', 1, 1], ['[' .repeat(100000), 1, 100001], ['{"a": "\u0001"}', 1, 8]] as const) {
      expect(() => JSON.parse(bad)).toThrow();
      expect(locateJsonError(bad), JSON.stringify(bad).slice(0, 40)).toMatchObject({ line, column });
    }
    const e = await caught(() => parseJson('{\n  "x": tru\n}', 'f.json'));
    expect(e.code).toBe(ErrorCode.Config);
    expect(e.message).toContain('f.json:2:8: not valid JSON');
  });
});
