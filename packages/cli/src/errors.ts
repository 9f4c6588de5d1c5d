import { ErrorCode, KVFoldError, type ErrorCodeValue } from '@kvfold/core';

/** A mistake in how the command was called (an unknown suite, a budget outside (0, 1], a bad number). */
export class UsageError extends Error {
  /**
   * Describe the mistake and the allowed values.
   *
   * @param message - What is wrong and what is allowed.
   */
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Error codes that mean "the input is wrong" (exit code 2) rather than "something failed" (exit code 1). */
const INPUT_CODES: ReadonlySet<ErrorCodeValue> = new Set([
  ErrorCode.Config,
  ErrorCode.UnknownPolicy,
  ErrorCode.UnknownBackend,
  ErrorCode.UnknownPlugin,
  ErrorCode.InvalidPlugin,
  ErrorCode.IncompatiblePlugin,
  ErrorCode.NameClash,
  ErrorCode.Budget,
  ErrorCode.Model,
  ErrorCode.NotFound,
]);

/** Exit codes of the `kvfold` command. */
export const EXIT = {
  /** Success. */
  ok: 0,
  /** A run or generation failed. */
  failure: 1,
  /** Bad input: config, option, suite, budget, model folder, plugin, a file that is not found. */
  usage: 2,
  /** Stopped by SIGINT; the run folder is resumable. */
  interrupted: 130,
} as const;

/** The exit code for an error thrown by a command. */
export function exitCodeFor(error: unknown): number {
  if (error instanceof UsageError) return EXIT.usage;
  if (error instanceof KVFoldError && INPUT_CODES.has(error.code)) return EXIT.usage;
  return EXIT.failure;
}

/** The text printed for an error: its message (with its code), plus the stack and causes with `debug`. */
export function formatError(error: unknown, debug: boolean): string {
  const e = error instanceof Error ? error : new Error(String(error));
  const code = e instanceof KVFoldError ? ` [${e.code}]` : '';
  let text = `kvfold: error${code}: ${e.message}`;
  if (debug) {
    text += `\n${e.stack ?? ''}`;
    let cause = (e as { cause?: unknown }).cause;
    while (cause instanceof Error) {
      text += `\ncaused by: ${cause.stack ?? cause.message}`;
      cause = (cause as { cause?: unknown }).cause;
    }
  } else if (exitCodeFor(e) === EXIT.failure) {
    text += '\n(run with --debug for the stack trace)';
  }
  return text;
}
