// The weights stamp in sessions.jsonl and report.md must identify the weights themselves: the same bytes in a
// fresh clone (new mtimes) give the same stamp, and a changed byte gives another one.
import { cpSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { weightsStamp } from '../src/index.js';

const made: string[] = [];
const folder = (files: Record<string, Uint8Array | string>): string => {
  const dir = mkdtempSync(join(tmpdir(), 'kvfold-stamp-'));
  made.push(dir);
  for (const [name, bytes] of Object.entries(files)) writeFileSync(join(dir, name), bytes);
  return dir;
};
afterEach(() => {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('weightsStamp', () => {
  const weights = Uint8Array.from({ length: 40_000 }, (_, i) => (i * 31) & 255);

  it('depends on the bytes, not on modification times or the folder', () => {
    const a = folder({ 'model.safetensors': weights, 'config.json': '{}' });
    const stamp = weightsStamp(a);
    expect(stamp).toMatch(/^[0-9a-f]{12}$/);
    utimesSync(join(a, 'model.safetensors'), new Date(2000, 0, 1), new Date(2000, 0, 1));
    expect(weightsStamp(a)).toBe(stamp);
    const b = mkdtempSync(join(tmpdir(), 'kvfold-stamp-copy-'));
    made.push(b);
    cpSync(a, b, { recursive: true });
    expect(weightsStamp(b)).toBe(stamp);
    const changed = weights.slice();
    changed[12_345] ^= 1;
    expect(weightsStamp(folder({ 'model.safetensors': changed }))).not.toBe(stamp);
  });

  it('covers every shard and the index, and ignores other files', () => {
    const shards = { 'model-00001-of-00002.safetensors': weights.subarray(0, 100), 'model-00002-of-00002.safetensors': weights.subarray(100, 200), 'model.safetensors.index.json': '{"weight_map":{}}' };
    const stamp = weightsStamp(folder({ ...shards, 'README.md': 'one' }));
    expect(weightsStamp(folder({ ...shards, 'README.md': 'two' }))).toBe(stamp);
    expect(weightsStamp(folder({ ...shards, 'model-00002-of-00002.safetensors': weights.subarray(101, 201) }))).not.toBe(stamp);
    expect(weightsStamp(folder({ ...shards, 'model.safetensors.index.json': '{"weight_map":{"a":"b"}}' }))).not.toBe(stamp);
  });
});
