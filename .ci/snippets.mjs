// Code snippets that documentation shows as runnable. A Markdown file marks one with
//   <!-- snippet: docs/snippets/<name>.mjs -->
// right above a ```js block that must equal that file, and may follow it with
//   <!-- prints -->
// and a ```text block that must equal what the file prints. test/docs.test.ts runs every snippet against
// the workspace sources; .ci/pack.mjs runs them again in a fresh project against the packed packages.
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const SNIPPET = /<!-- snippet: (\S+) -->\n```js\n([\s\S]*?)```\n(?:\n?<!-- prints -->\n```text\n([\s\S]*?)```\n)?/g;

/** Markdown files that may hold snippets: the README, every package's README, and docs/. */
export function documents(root) {
  const docs = ['README.md'];
  for (const dir of ['packages', 'examples']) {
    for (const e of readdirSync(join(root, dir))) if (existsSync(join(root, dir, e, 'README.md'))) docs.push(`${dir}/${e}/README.md`);
  }
  for (const f of readdirSync(join(root, 'docs'))) if (f.endsWith('.md')) docs.push(`docs/${f}`);
  return docs;
}

/** Every marked snippet: where it is shown, its file, the code shown, and the output shown (if any). */
export function findSnippets(root) {
  const out = [];
  for (const doc of documents(root)) {
    const text = readFileSync(join(root, doc), 'utf8');
    for (const m of text.matchAll(SNIPPET)) out.push({ doc, file: m[1], shown: m[2], prints: m[3] });
  }
  return out;
}
