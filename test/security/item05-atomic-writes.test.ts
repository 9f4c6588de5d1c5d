// Issue 10, item 5: run files are replaced atomically (temp file in the same folder, fsync, rename), and
// a run folder whose config.json was damaged is still resumable, or fails saying how.
import { linkSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RunStore, createKVFold, resolveBenchConfig, updateResults } from '@kvfold/bench';
import { ErrorCode } from '@kvfold/core';
import { main } from 'kvfold';
import { release, temp } from './helpers.js';

describe('item 5: atomic run files', () => {
  it('config.json, metrics.json, report.md, plots and RESULTS.md are replaced by rename, never rewritten in place', async () => {
    const kv = await createKVFold();
    const dir = join(temp(), 'run');
    const store = RunStore.open(dir, resolveBenchConfig(kv, { bench: { budgets: [0.5] } }));
    store.writeJson('metrics.json', { v: 1 });
    store.writeText('report.md', 'old');
    store.writeText('plots/a.svg', '<svg/>');
    const results = join(dir, 'RESULTS.md');
    updateResults(results, '## a');
    // A hard link keeps the old inode: an in-place rewrite would show through it, a rename does not.
    for (const f of ['metrics.json', 'report.md', 'plots/a.svg', 'RESULTS.md']) linkSync(join(dir, f), join(dir, `${f.replace('/', '_')}.old`));
    store.writeJson('metrics.json', { v: 2 });
    store.writeText('report.md', 'new');
    store.writeText('plots/a.svg', '<svg>new</svg>');
    updateResults(results, '## b');
    release(store);
    expect(readFileSync(join(dir, 'metrics.json.old'), 'utf8')).toBe('{\n  "v": 1\n}\n');
    expect(readFileSync(join(dir, 'report.md.old'), 'utf8')).toBe('old');
    expect(readFileSync(join(dir, 'plots_a.svg.old'), 'utf8')).toBe('<svg/>');
    expect(readFileSync(join(dir, 'RESULTS.md.old'), 'utf8')).toContain('## a');
    expect(statSync(join(dir, 'report.md')).ino).not.toBe(statSync(join(dir, 'report.md.old')).ino);
    // No temporary file is left behind.
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('an empty config.json: --resume fails saying how to recover, and the same config passed again resumes', async () => {
    const out = temp();
    const config = join(out, 'c.json');
    writeFileSync(config, JSON.stringify({ bench: { name: 'sec', suites: { speed: { throughput: { backends: ['reference'], heads: 1, length: 16, headDim: 2, reps: 1 }, decode: null, scaling: null } }, policies: ['window'], budgets: [0.5] } }));
    const lines: string[] = [];
    const io = { cwd: out, stdout: { write: (s: string) => lines.push(s) }, stderr: { write: (s: string) => lines.push(s) } };
    expect(await main(['bench', '--config', config, '--out', out, '--id', 'r1', '--quiet'], io)).toBe(0);
    const run = join(out, 'r1');
    const before = readFileSync(join(run, 'predictions.jsonl'), 'utf8');
    writeFileSync(join(run, 'config.json'), ''); // a kill between truncate and write, as the old code could leave it
    lines.length = 0;
    expect(await main(['bench', '--resume', run, '--quiet'], io)).toBe(2);
    expect(lines.join('')).toMatch(new RegExp(`\\[${ErrorCode.Config}\\].*config\\.json is damaged \\(it is empty\\).*kvfold bench --config <that file> --out ${out} --id r1`, 's'));
    lines.length = 0;
    expect(await main(['bench', '--config', config, '--out', out, '--id', 'r1', '--quiet'], io)).toBe(0);
    expect(lines.join('')).toMatch(/warning: .*config\.json was damaged \(it is empty\); restored it from the config passed now, which matches the hash metrics\.json recorded/);
    expect(readFileSync(join(run, 'predictions.jsonl'), 'utf8')).toBe(before);
    expect(readdirSync(run).some((f) => f.startsWith('config.json.damaged-'))).toBe(true);
    expect(await main(['bench', '--resume', run, '--quiet'], io)).toBe(0);
  });
});
