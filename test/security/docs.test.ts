// docs/security.md backs each row with a named test: every test it names must exist, and every
// test/security/item*.test.ts file must be cited.
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));
const doc = readFileSync(`${root}docs/security.md`, 'utf8');

/** `file`: "name"; "name" references of the document, names unescaped. */
function references(): { file: string; name: string }[] {
  const out: { file: string; name: string }[] = [];
  for (const m of doc.matchAll(/`([^`\s]+\.test\.ts)`((?:(?::\s*|;\s*)"(?:[^"\\]|\\.)*")+)/g)) {
    for (const n of m[2]!.matchAll(/"((?:[^"\\]|\\.)*)"/g)) out.push({ file: m[1]!, name: n[1]!.replace(/\\"/g, '"') });
  }
  return out;
}

describe('docs/security.md', () => {
  it('names only tests that exist', () => {
    const refs = references();
    expect(refs.length).toBeGreaterThan(20);
    for (const { file, name } of refs) {
      const source = readFileSync(`${root}${file}`, 'utf8').replace(/\\'/g, "'");
      expect(source, `${file}: "${name}"`).toContain(`'${name}'`);
    }
  });
  it('cites every item test file of the security suite', () => {
    const cited = new Set(doc.match(/test\/security\/[\w-]+\.test\.ts/g));
    for (const f of readdirSync(`${root}test/security`).filter((x) => x.startsWith('item'))) expect(cited, f).toContain(`test/security/${f}`);
  });
});
