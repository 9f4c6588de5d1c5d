import { resolve } from 'node:path';
import { FUZZ_BACKENDS, FUZZ_MARKERS, createKVFold, fuzzFailures, fuzzSummary, runFuzz, updateResults } from '@kvfold/bench';
import { UsageError } from '../errors.js';
import { list, parsePositiveInt, type CliIO } from '../io.js';

/** Options of `kvfold fuzz`. */
export interface FuzzCommandOptions {
  /** Number of cases. */
  readonly cases: string;
  /** First seed. */
  readonly seed: string;
  /** Comma-separated backend labels; the first is the reference. */
  readonly backends: string;
  /** Comma-separated policies (default every built-in one). */
  readonly policies?: string;
  /** Print the report as JSON on stdout. */
  readonly json?: boolean;
  /** No progress lines. */
  readonly quiet?: boolean;
  /** Replace the fuzz section of this results file (bench/RESULTS.md) after the run. */
  readonly updateResults?: string;
}

/**
 * `kvfold fuzz`: run the fuzz harness and print what it counted. Exit 0 when every count that must be 0
 * is 0, 1 otherwise.
 */
export async function fuzzCommand(o: FuzzCommandOptions, io: CliIO, command: string): Promise<number> {
  const cases = parsePositiveInt(o.cases, '--cases');
  const seed = Number(o.seed);
  if (!Number.isInteger(seed) || seed < 0 || seed > 2 ** 31) throw new UsageError(`--seed ${JSON.stringify(o.seed)} must be an integer in [0, 2^31]`);
  const backends = list(o.backends);
  for (const b of backends) if (!(b in FUZZ_BACKENDS)) throw new UsageError(`unknown fuzz backend ${JSON.stringify(b)}; backends: ${Object.keys(FUZZ_BACKENDS).join(', ')}`);
  if (backends.length === 0) throw new UsageError('--backends needs at least one backend');
  const kv = await createKVFold();
  const policies = o.policies !== undefined ? list(o.policies) : undefined;
  for (const p of policies ?? []) kv.policies.get(p);
  const every = Math.max(1, Math.round(cases / 20));
  const t0 = performance.now();
  const report = await runFuzz(kv, {
    cases,
    seed,
    backends,
    ...(policies ? { policies } : {}),
    onCase: (done, total) => {
      if (!o.quiet && (done % every === 0 || done === total)) io.stderr.write(`kvfold fuzz: ${done}/${total} cases (${Math.round((performance.now() - t0) / 1000)} s)\n`);
    },
  });
  if (o.json) io.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else io.stdout.write(`${fuzzSummary(report)}\n`);
  if (o.updateResults !== undefined) {
    const file = resolve(io.cwd, o.updateResults);
    updateResults(file, `## Fuzz harness (kvfold fuzz)\n\nCommand: \`${command}\` (${new Date().toISOString().slice(0, 10)}).\n\n${fuzzSummary(report)}`, FUZZ_MARKERS);
    io.stderr.write(`kvfold: updated the fuzz section of ${file}\n`);
  }
  return fuzzFailures(report) === 0 ? 0 : 1;
}
