// Checks on the guides in docs/ that can go stale: measured numbers must be quoted from bench/RESULTS.md
// (where each figure's command is recorded), never typed in by hand.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const read = (p: string) => readFileSync(fileURLToPath(new URL(p, import.meta.url)), 'utf8');

describe('docs/choosing-a-backend.md', () => {
  const guide = read('../docs/choosing-a-backend.md');
  const measured = guide.slice(guide.indexOf('## Measured numbers'));
  it('quotes its table and command verbatim from bench/RESULTS.md', () => {
    const results = read('../bench/RESULTS.md');
    const rows = measured.split('\n').filter((l) => l.startsWith('|') && !/^\|[-:| ]+\|$/.test(l));
    expect(rows.length).toBeGreaterThan(2);
    for (const row of rows) expect(results, `row not in bench/RESULTS.md: ${row}`).toContain(row);
    const command = /```sh\n(.+)\n```/.exec(measured)?.[1];
    expect(command).toBeDefined();
    expect(results).toContain(command!);
  });
});
