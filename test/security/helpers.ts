// Shared helpers of the security suite: temp folders, a way to catch an error, and a global marker that
// code loaded by mistake would set (so "nothing ran" is observable).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A fresh temp folder. */
export function temp(prefix = 'kvfold-sec-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** The error a call throws or a promise rejects with; fails the test when there is none. */
export async function caught(fn: () => unknown): Promise<Error & { code?: string; details?: Record<string, unknown> }> {
  try {
    await fn();
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected an error, got none');
}

/** JavaScript that sets `globalThis[name] = true` when it runs. */
export function marker(name: string): string {
  return `globalThis[${JSON.stringify(name)}] = true;\n`;
}

/** Whether code setting `name` ran in this process. */
export function ran(name: string): boolean {
  return (globalThis as Record<string, unknown>)[name] === true;
}

/** Close a run store (release its lock); written so the suite also runs against code without the lock. */
export function release(store: object): void {
  (store as { close?: () => void }).close?.();
}
