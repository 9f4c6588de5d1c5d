// Checks on the guides in docs/ that can go stale: measured numbers must be quoted from bench/RESULTS.md
// (where each figure's command is recorded), never typed in by hand.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { DEMO_SUMMARY } from '@kvfold/bench';
import { documents, findSnippets } from '../.ci/snippets.mjs';

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

describe('runnable snippets in the documentation (marked <!-- snippet: file -->)', () => {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const snippets = findSnippets(root);

  it('the README shows the one-layer and the one-call snippets with what they print', () => {
    const inReadme = snippets.filter((s) => s.doc === 'README.md');
    expect(inReadme.map((s) => s.file)).toEqual(expect.arrayContaining(['docs/snippets/compress-one-layer.mjs', 'docs/snippets/answer.mjs']));
    for (const s of inReadme) expect(s.prints, `${s.file} in README.md shows no output`).toBeDefined();
  });

  it.each(snippets.map((s) => [`${s.doc}: ${s.file}`, s] as const))('%s is shown verbatim, runs, and prints what is shown', async (_, s) => {
    expect(s.shown).toBe(readFileSync(join(root, s.file), 'utf8'));
    const printed: string[] = [];
    const spy = vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => void printed.push(args.join(' ')));
    vi.resetModules();
    try {
      await import(pathToFileURL(join(root, s.file)).href);
    } finally {
      spy.mockRestore();
    }
    if (s.prints !== undefined) expect(`${printed.join('\n')}\n`).toBe(s.prints);
  });
});

describe('what `demo` does and how long it takes: one statement, quoted everywhere', () => {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const quoting = ['README.md', 'packages/cli/README.md', 'packages/bench/README.md', 'docs/getting-started.md', 'examples/quickstart/README.md'];

  it.each(quoting)('%s quotes DEMO_SUMMARY (what kvfold demo prints first)', (doc) => {
    expect(readFileSync(join(root, doc), 'utf8')).toContain(DEMO_SUMMARY);
  });

  it('no document gives the demo another duration or says it runs an example', () => {
    for (const doc of documents(root)) {
      for (const line of readFileSync(join(root, doc), 'utf8').split('\n')) {
        if (!/\bdemo\b/.test(line)) continue;
        if (/minute/.test(line)) expect(line, `${doc}: a demo duration other than DEMO_SUMMARY's`).toContain(DEMO_SUMMARY);
        expect(line, `${doc}: the demo runs the benchmark, not an example`).not.toMatch(/demo\b[^.]*\bruns?\b[^.]*\b(examples\/|quickstart)/);
      }
    }
  });
});
