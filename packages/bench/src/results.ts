import { existsSync, readFileSync } from 'node:fs';
import { writeFileAtomic } from '@kvfold/core';

/** Markers around the benchmark's own part of bench/RESULTS.md; everything outside them is left as is. */
export const RESULTS_MARKERS = {
  /** Opens the benchmark's section. */
  begin: '<!-- kvfold-bench:begin (written by `kvfold bench --update-results`; other sections are kept) -->',
  /** Closes it. */
  end: '<!-- kvfold-bench:end -->',
} as const;

/** Markers around the fuzz harness's part of bench/RESULTS.md (`kvfold fuzz --update-results`). */
export const FUZZ_MARKERS = {
  /** Opens the fuzz section. */
  begin: '<!-- kvfold-fuzz:begin (written by `kvfold fuzz --update-results`; other sections are kept) -->',
  /** Closes it. */
  end: '<!-- kvfold-fuzz:end -->',
} as const;

/**
 * Replace the benchmark's section of a results file (between {@link RESULTS_MARKERS}, or other `markers`
 * such as {@link FUZZ_MARKERS}) with `section`, keeping every other section (other owners' "## ..." topics)
 * byte for byte. Without markers in the file, the benchmark's section is inserted before the first `## `
 * heading (after the file's introduction) and any other section is appended; a missing file is created.
 * The file is replaced atomically.
 */
export function updateResults(file: string, section: string, markers: { readonly begin: string; readonly end: string } = RESULTS_MARKERS): void {
  const block = `${markers.begin}\n${section.trim()}\n${markers.end}`;
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '# kvfold benchmark results\n\n';
  const b = text.indexOf(markers.begin);
  const e = text.indexOf(markers.end);
  let next: string;
  if (b >= 0 && e > b) {
    next = text.slice(0, b) + block + text.slice(e + markers.end.length);
  } else {
    // Only the benchmark's own section goes first; any other section is appended, so it never lands inside
    // another marked section.
    const at = markers === RESULTS_MARKERS ? text.search(/^## /m) : -1;
    next = at >= 0 ? `${text.slice(0, at)}${block}\n\n${text.slice(at)}` : `${text.trimEnd()}\n\n${block}\n`;
  }
  writeFileAtomic(file, next);
}

/**
 * Turn a run's report.md into a section of bench/RESULTS.md: the title becomes `## <title>`, every
 * heading moves one level down, and plot images (which live in the git-ignored run folder) are dropped.
 */
export function resultsSection(report: string, title: string): string {
  const lines = report.split('\n');
  const out = [`## ${title}`, ''];
  for (const line of lines) {
    if (/^# /.test(line)) continue;
    if (/^!\[.*\]\(plots\//.test(line)) continue;
    out.push(/^#{2,5} /.test(line) ? `#${line}` : line);
  }
  return out.join('\n').replace(/\n{3,}/g, '\n\n').trim();
}
