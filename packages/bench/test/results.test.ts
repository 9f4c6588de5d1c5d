import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RESULTS_MARKERS, resultsSection, updateResults } from '../src/index.js';
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

  it('turns a report into a section: headings one level down, plots dropped', () => {
    const s = resultsSection('# kvfold benchmark: x\n\n- command: `c`\n\n## Summary\n\n| a |\n\n![p](plots/a.svg)\n\n### Sub\n', 'Benchmark: x');
    expect(s).toBe('## Benchmark: x\n\n- command: `c`\n\n### Summary\n\n| a |\n\n#### Sub');
  });
});
