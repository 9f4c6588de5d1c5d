import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FUZZ_MARKERS, RESULTS_MARKERS, resultsSection, updateResults } from '../src/index.js';
import { tempDir } from './helpers/tiny-model.js';

const OTHERS = '## tfjs backend: kernels\n\ntable A\n\n## onnx backend: overhead\n\ntable B\n';

describe('bench/RESULTS.md update', () => {
  it('inserts the section before the other sections, then replaces only it', () => {
    const file = join(tempDir(), 'RESULTS.md');
    writeFileSync(file, `# results\n\nintro\n\n${OTHERS}`);
    updateResults(file, '## Benchmark\n\nfirst');
    let text = readFileSync(file, 'utf8');
    expect(text.indexOf(RESULTS_MARKERS.begin)).toBeLessThan(text.indexOf('## tfjs backend'));
    expect(text).toContain(OTHERS);
    updateResults(file, '## Benchmark\n\nsecond');
    text = readFileSync(file, 'utf8');
    expect(text).toContain('second');
    expect(text).not.toContain('first');
    expect(text).toContain(OTHERS);
    expect(text.startsWith('# results\n\nintro\n\n')).toBe(true);
  });

  it('appends another marked section (the fuzz harness\'s) at the end, outside the benchmark\'s, then replaces only it', () => {
    const file = join(tempDir(), 'RESULTS.md');
    writeFileSync(file, `# results\n\nintro\n\n${OTHERS}`);
    updateResults(file, '## Benchmark\n\nbench');
    updateResults(file, '## Fuzz\n\none', FUZZ_MARKERS);
    let text = readFileSync(file, 'utf8');
    expect(text.indexOf(FUZZ_MARKERS.begin)).toBeGreaterThan(text.indexOf('table B'));
    updateResults(file, '## Benchmark\n\nbench 2');
    updateResults(file, '## Fuzz\n\ntwo', FUZZ_MARKERS);
    text = readFileSync(file, 'utf8');
    expect(text).toContain('bench 2');
    expect(text).toContain('two');
    expect(text).not.toContain('one');
    expect(text).toContain(OTHERS);
  });

  it('turns a report into a section: headings one level down, plots dropped', () => {
    const s = resultsSection('# kvfold benchmark: x\n\n- command: `c`\n\n## Summary\n\n| a |\n\n![p](plots/a.svg)\n\n### Sub\n', 'Benchmark: x');
    expect(s).toBe('## Benchmark: x\n\n- command: `c`\n\n### Summary\n\n| a |\n\n#### Sub');
  });
});
