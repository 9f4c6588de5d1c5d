// Regenerates devils-dictionary.txt from Debian's dict-devil package (The Devil's Dictionary by
// Ambrose Bierce, 1911, public domain; see README.md in this folder):
//   apt-get download dict-devil && dpkg-deb -x dict-devil_*.deb x
//   node corpus/prepare.mjs x/usr/share/dictd/devil.dict.dz > corpus/devils-dictionary.txt
// Output: one sentence per line, ASCII, no digits, no colons, no underscores, headwords lower-cased
// after their first letter, so the text can sit between task facts without looking like one.
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

const raw = gunzipSync(readFileSync(process.argv[2])).toString('latin1');
const start = raw.indexOf('PREFACE');
if (start < 0) throw new Error('no PREFACE in the dictionary text');
const lines = raw
  .slice(start + 'PREFACE'.length)
  .split('\n')
  // Right-aligned attributions ("G.J.", "Munwele") and the trailing alphabet line are not prose.
  .filter((l) => !/^ {20,}\S/.test(l) && !/^ ?abcdefghijklmnopqrstuvwxyz\s*$/.test(l));
let text = lines.join(' ');
text = text
  .replace(/[^\x20-\x7e]/g, ' ')
  .replace(/_/g, '')
  .replace(/:/g, ',')
  .replace(/\b([A-Z])([A-Z']+)\b/g, (_, a, b) => a + b.toLowerCase())
  .replace(/\s+/g, ' ')
  .trim();
const sentences = text
  .split(/(?<=[.!?]["')]?) (?=["'(]?[A-Z])/)
  .map((s) => s.trim())
  .filter((s) => s.length >= 2 && !/\d/.test(s) && !/pass key|\bVAR\b/i.test(s));
process.stdout.write(`${sentences.join('\n')}\n`);
