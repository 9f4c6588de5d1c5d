import { readFileSync, statSync } from 'node:fs';
import { ConfigError, NotFoundError } from './errors.js';

/** Where a JSON text stops being valid: 0-based offset, 1-based line and column, and why. */
export interface JsonErrorLocation {
  /** Offset (UTF-16 code units) of the first character that is not valid there. */
  readonly offset: number;
  /** 1-based line of that character. */
  readonly line: number;
  /** 1-based column of that character. */
  readonly column: number;
  /** What was expected. */
  readonly reason: string;
}

const WS = new Set([0x20, 0x09, 0x0a, 0x0d]);
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const ESCAPE = new Set(['"', '\\', '/', 'b', 'f', 'n', 'r', 't']);

/**
 * Find the first syntax error of a JSON text (RFC 8259), or undefined when it is valid. Iterative, so a
 * deeply nested document cannot overflow the stack; V8's own messages name a position only for some
 * errors, which is why this scanner exists.
 */
export function locateJsonError(text: string): JsonErrorLocation | undefined {
  let i = 0;
  const fail = (reason: string): JsonErrorLocation => {
    let line = 1;
    let lineStart = 0;
    for (let j = 0; j < i && j < text.length; j++) {
      if (text.charCodeAt(j) === 0x0a) {
        line++;
        lineStart = j + 1;
      }
    }
    const found = i >= text.length ? 'end of input' : JSON.stringify(text[i]);
    return { offset: i, line, column: i - lineStart + 1, reason: `${reason}, found ${found}` };
  };
  const skip = (): void => {
    while (i < text.length && WS.has(text.charCodeAt(i))) i++;
  };
  const string = (): JsonErrorLocation | undefined => {
    i++; // opening quote
    for (;;) {
      if (i >= text.length) return fail('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return undefined;
      }
      if (c < 0x20) return fail('control character in a string (escape it)');
      if (c === 0x5c) {
        const e = text[i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
            i++;
            return fail('\\u must be followed by 4 hex digits');
          }
          i += 6;
        } else if (e !== undefined && ESCAPE.has(e)) {
          i += 2;
        } else {
          i++;
          return fail('invalid escape');
        }
      } else i++;
    }
  };
  // Each stack entry is an open container: '{' or '['. `expect` says what may come next.
  const stack: string[] = [];
  let expect: 'value' | 'key' | 'after-value' | 'first-key' | 'first-value' = 'value';
  for (;;) {
    skip();
    if (expect === 'value' || expect === 'first-value') {
      if (expect === 'first-value' && text[i] === ']') {
        stack.pop();
        i++;
        expect = 'after-value';
        continue;
      }
      const c = text[i];
      if (c === '{') {
        stack.push('{');
        i++;
        expect = 'first-key';
        continue;
      }
      if (c === '[') {
        stack.push('[');
        i++;
        expect = 'first-value';
        continue;
      }
      if (c === '"') {
        const e = string();
        if (e) return e;
      } else if (text.startsWith('true', i)) i += 4;
      else if (text.startsWith('false', i)) i += 5;
      else if (text.startsWith('null', i)) i += 4;
      else {
        NUMBER.lastIndex = i;
        const m = NUMBER.exec(text);
        if (!m || m[0] === '-' || m[0] === '') return fail('expected a value');
        i += m[0].length;
      }
      expect = 'after-value';
      continue;
    }
    if (expect === 'key' || expect === 'first-key') {
      if (expect === 'first-key' && text[i] === '}') {
        stack.pop();
        i++;
        expect = 'after-value';
        continue;
      }
      if (text[i] !== '"') return fail('expected a double-quoted property name');
      const e = string();
      if (e) return e;
      skip();
      if (text[i] !== ':') return fail('expected ":" after a property name');
      i++;
      expect = 'value';
      continue;
    }
    // after-value
    const top = stack[stack.length - 1];
    if (top === undefined) {
      if (i < text.length) return fail('expected end of input after the document');
      return undefined;
    }
    const c = text[i];
    if (c === ',') {
      i++;
      expect = top === '{' ? 'key' : 'value';
    } else if ((c === '}' && top === '{') || (c === ']' && top === '[')) {
      stack.pop();
      i++;
    } else return fail(top === '{' ? 'expected "," or "}"' : 'expected "," or "]"');
  }
}

/**
 * Parse a JSON document, naming `source` (a file name) and the line and column of a syntax error.
 * A leading byte-order mark is ignored.
 * @throws ConfigError whose message reads `<source>:<line>:<column>: <what was expected>`.
 */
export function parseJson(text: string, source: string): unknown {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  try {
    return JSON.parse(body);
  } catch (e) {
    const at = locateJsonError(body) ?? { offset: 0, line: 1, column: 1, reason: (e as Error).message };
    throw new ConfigError(
      [{ path: '', rule: 'json', message: `${source}:${at.line}:${at.column}: not valid JSON: ${at.reason}`, allowed: { line: at.line, column: at.column } }],
      source,
    );
  }
}

/** Options of {@link readJsonFile}. */
export interface ReadJsonOptions {
  /** What the file is, for messages (default `JSON file`). */
  readonly what?: string;
  /** Largest file accepted, bytes (default 64 MiB): checked before the file is read. */
  readonly maxBytes?: number;
  /** Appended to the "not found" message: what to do instead. */
  readonly hint?: string;
}

/**
 * Read and parse a JSON file.
 * @throws NotFoundError when it does not exist; ConfigError naming the file, line and column when it is
 *   not valid JSON, or naming the file when it is larger than `maxBytes` or not a regular file.
 */
export function readJsonFile(path: string, options: ReadJsonOptions = {}): unknown {
  const what = options.what ?? 'JSON file';
  const max = options.maxBytes ?? 64 * 1024 * 1024;
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new ConfigError([{ path: '', rule: 'file', message: `${path} is not a regular file` }], what);
    size = st.size;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') throw new NotFoundError(what, path, options.hint);
    if (e instanceof ConfigError) throw e;
    throw new ConfigError([{ path: '', rule: 'file', message: `${path} cannot be read: ${(e as Error).message}` }], what);
  }
  if (size > max) throw new ConfigError([{ path: '', rule: 'maxBytes', message: `${path} has ${size} bytes; at most ${max} are read`, allowed: { maxBytes: max } }], what);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError([{ path: '', rule: 'file', message: `${path} cannot be read: ${(e as Error).message}` }], what);
  }
  return parseJson(text, path);
}
