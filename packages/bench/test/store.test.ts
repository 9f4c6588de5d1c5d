import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, type KVFold } from '@kvfold/core';
import { RunStore, createKVFold, newRunId, readStoredConfig, resolveBenchConfig, type ItemRecord } from '../src/index.js';
import { tempDir } from './helpers/tiny-model.js';

let kv: KVFold;
beforeAll(async () => {
  kv = await createKVFold();
});

const rec = (key: string, data: unknown = { x: 1 }): ItemRecord => ({ key, suite: 'needle', variant: 'full@1', data, ms: 1, at: '2026-01-01T00:00:00.000Z' });

describe('run store', () => {
  it('appends items, reopens them, and never stores a key twice', () => {
    const dir = join(tempDir(), 'run');
    const config = resolveBenchConfig(kv, { bench: { budgets: [0.5] } });
    const a = RunStore.open(dir, config);
    expect(a.reused).toBe(0);
    a.append(rec('k1'));
    a.append(rec('k2', { text: 'ünïcödé \u{fffd}' }));
    a.append(rec('k1', { x: 2 }));
    expect(readFileSync(join(dir, 'predictions.jsonl'), 'utf8').trim().split('\n')).toHaveLength(2);
    a.close();
    const b = RunStore.open(dir, config);
    b.close();
    expect(b.reused).toBe(2);
    expect(b.has('k1') && b.has('k2')).toBe(true);
    expect(b.get<{ x: number }>('k1')!.data.x).toBe(1);
    expect(b.records('needle').map((r) => r.key)).toEqual(['k1', 'k2']);
  });

  it('moves a torn last line (a crash mid-write) aside and keeps every complete one', () => {
    const dir = join(tempDir(), 'run');
    const config = resolveBenchConfig(kv, { bench: {} });
    const a = RunStore.open(dir, config);
    a.append(rec('k1', { text: 'é' }));
    a.append(rec('k2'));
    a.close();
    const file = join(dir, 'predictions.jsonl');
    appendFileSync(file, '{"key":"k3","suite":"nee');
    const warnings: string[] = [];
    const b = RunStore.open(dir, config, { warn: (m) => warnings.push(m) });
    expect(b.reused).toBe(2);
    expect(b.rejected).toBe(1);
    expect(warnings[0]).toMatch(/^1 line of .*predictions\.jsonl was not a valid record .* moved to .*predictions\.rejected\.jsonl; the 2 valid items are kept/);
    expect(readFileSync(join(dir, 'predictions.rejected.jsonl'), 'utf8')).toBe('{"key":"k3","suite":"nee\n');
    expect(b.has('k3')).toBe(false);
    // the torn tail was moved aside, so a new append starts on a clean line
    b.append(rec('k3'));
    b.close();
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    expect(lines.map((l) => (JSON.parse(l) as ItemRecord).key)).toEqual(['k1', 'k2', 'k3']);
  });

  it('refuses to resume a folder that holds another configuration; restores a damaged config.json from the config passed again', () => {
    const dir = join(tempDir(), 'run');
    RunStore.open(dir, resolveBenchConfig(kv, { bench: { budgets: [0.5] } })).close();
    expect(() => RunStore.open(dir, resolveBenchConfig(kv, { bench: { budgets: [0.2] } }))).toThrow(ConfigError);
    writeFileSync(join(dir, 'config.json'), '{not json');
    expect(() => readStoredConfig(dir)).toThrow(/config\.json is damaged .*resume with the config that made the run, `kvfold bench --config <that file> --out .* --id run`/);
    const warnings: string[] = [];
    RunStore.open(dir, resolveBenchConfig(kv, { bench: {} }), { warn: (m) => warnings.push(m) }).close();
    expect(warnings[0]).toMatch(/config\.json was damaged .*restored it from the config passed now/);
    expect(readStoredConfig(dir).hash).toBe(resolveBenchConfig(kv, { bench: {} }).hash);
  });

  it('run ids are sortable timestamps plus the name', () => {
    expect(newRunId('demo', new Date('2026-03-04T05:06:07.089Z'))).toBe('2026-03-04T05-06-07-089-demo');
  });
});
