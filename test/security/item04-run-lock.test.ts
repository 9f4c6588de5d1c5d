// Issue 10, item 4: one process at a time works on a run folder; a second gets a typed error naming the
// holder, and a lock left by a process that no longer runs is replaced.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RunStore, createKVFold, resolveBenchConfig } from '@kvfold/bench';
import { ErrorCode } from '@kvfold/core';
import { caught, release, temp } from './helpers.js';

describe('item 4: run folder lock', () => {
  it('a second open of a folder in use fails with KVF_RUN_LOCKED naming pid and host; close releases it', async () => {
    const kv = await createKVFold();
    const config = resolveBenchConfig(kv, { bench: { budgets: [0.5] } });
    const dir = join(temp(), 'run');
    const first = RunStore.open(dir, config);
    const e = await caught(() => RunStore.open(dir, config));
    expect(e.code).toBe(ErrorCode.RunLocked);
    expect(e.message).toContain(`is in use by process ${process.pid} on ${hostname()}`);
    const lock = JSON.parse(readFileSync(join(dir, '.lock'), 'utf8')) as { pid: number; host: string };
    expect(lock).toMatchObject({ pid: process.pid, host: hostname() });
    release(first);
    expect(existsSync(join(dir, '.lock'))).toBe(false);
    release(RunStore.open(dir, config));
  });

  it('a stale lock (its process is gone) is replaced', async () => {
    const kv = await createKVFold();
    const config = resolveBenchConfig(kv, { bench: { budgets: [0.5] } });
    const dir = join(temp(), 'run');
    release(RunStore.open(dir, config));
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
    writeFileSync(join(dir, '.lock'), JSON.stringify({ pid: Number(gone), host: hostname(), startedAt: 'then' }));
    const store = RunStore.open(dir, config);
    expect(JSON.parse(readFileSync(join(dir, '.lock'), 'utf8')).pid).toBe(process.pid);
    release(store);
  });
});
