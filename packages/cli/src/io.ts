import { resolve } from 'node:path';
import { readJsonFile as readJson } from '@kvfold/core';
import { UsageError } from './errors.js';

/** A text sink (process.stdout, process.stderr, or a test buffer). */
export interface Sink {
  /** Write text. */
  write(text: string): unknown;
  /** Terminal or not (decides the progress bar). */
  readonly isTTY?: boolean;
}

/** Where a command reads and writes; tests pass buffers. */
export interface CliIO {
  /** Results (tables, JSON, generated text). */
  readonly stdout: Sink;
  /** Progress, messages and errors. */
  readonly stderr: Sink;
  /** Working directory paths resolve against. */
  readonly cwd: string;
}

/** The process's own streams and working directory. */
export function processIO(): CliIO {
  return { stdout: process.stdout, stderr: process.stderr, cwd: process.cwd() };
}

/**
 * Read a JSON document from a file (at most 16 MiB).
 * @throws NotFoundError when it is missing; ConfigError naming the file, line and column when it is not valid JSON.
 */
export function readJsonFile(io: CliIO, file: string): unknown {
  return readJson(resolve(io.cwd, file), { what: 'config file', maxBytes: 16 * 1024 * 1024, hint: 'give the path of a JSON config (kvfold schema writes the schema it follows)' });
}

/** Split a comma-separated option value into trimmed non-empty parts. */
export function list(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/**
 * Parse a budget ratio given on the command line.
 * @throws UsageError when it is not a number in (0, 1].
 */
export function parseBudget(text: string, option = '--budget'): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n <= 0 || n > 1) throw new UsageError(`${option} ${JSON.stringify(text)} is outside (0, 1]; give a ratio such as 0.35 (keep 35% of the prompt)`);
  return n;
}

/**
 * Parse a positive integer option.
 * @throws UsageError otherwise.
 */
export function parsePositiveInt(text: string, option: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${option} ${JSON.stringify(text)} must be a positive integer`);
  return n;
}

/**
 * How the user can run this command again: `pnpm kvfold` when it was started by one of the repository's
 * root scripts (`pnpm kvfold`, `pnpm demo`, `pnpm bench`, which have no `kvfold` on the PATH), else
 * `npx kvfold`, which finds the bin of an installed `kvfold` package.
 */
export function commandName(env: NodeJS.ProcessEnv = process.env): string {
  const script = env.npm_lifecycle_event;
  return script === 'kvfold' || script === 'demo' || script === 'bench' ? 'pnpm kvfold' : 'npx kvfold';
}
