import { describe, expect, it } from 'vitest';
import { createRng } from '@kvfold/core';

describe('createRng', () => {
  it('is deterministic for a seed and differs across seeds', () => {
    const a = createRng(42), b = createRng(42), c = createRng(43);
    const xs = Array.from({ length: 5 }, () => a.next());
    expect(Array.from({ length: 5 }, () => b.next())).toEqual(xs);
    expect(Array.from({ length: 5 }, () => c.next())).not.toEqual(xs);
  });
  it('keeps its sequence: the values createRng(42) gave before its state moved into an int32 array', () => {
    const r = createRng(42);
    expect(Array.from({ length: 4 }, () => r.next())).toEqual([0.4777817411813885, 0.6772579706739634, 0.5981040478218347, 0.31909019127488136]);
    // The 100,000th draw: the state wraps around 2^32 many times before it.
    for (let i = 4; i < 99_999; i++) r.next();
    expect(r.next()).toBe(0.7292314558289945);
  });
  it('fill writes the values next() would give, in order, and advances as far', () => {
    const a = createRng(42), b = createRng(42);
    const head = new Float64Array(3);
    const rest = new Float64Array(99_996);
    a.fill!(head);
    a.fill!(rest);
    a.fill!(new Float64Array(0));
    const byNext = Array.from({ length: 99_999 }, () => b.next());
    expect(Array.from(head)).toEqual(byNext.slice(0, 3));
    expect(Array.from(head)).toEqual([0.4777817411813885, 0.6772579706739634, 0.5981040478218347]);
    expect(Array.from(rest)).toEqual(byNext.slice(3));
    // Both streams stand at the 100,000th draw.
    expect(a.next()).toBe(0.7292314558289945);
    expect(b.next()).toBe(0.7292314558289945);
  });
  it('forks independent streams without advancing the parent', () => {
    const a = createRng(7);
    const f1 = a.fork(1).next();
    const f2 = a.fork(2).next();
    expect(f1).not.toBe(f2);
    expect(createRng(7).next()).toBe(a.next());
    expect(createRng(7).fork(1).next()).toBe(f1);
  });
  it('stays in [0, 1) and is roughly uniform', () => {
    const r = createRng(1);
    let sum = 0;
    const n = 20_000;
    for (let i = 0; i < n; i++) {
      const x = r.next();
      expect(x >= 0 && x < 1).toBe(true);
      sum += x;
    }
    expect(Math.abs(sum / n - 0.5)).toBeLessThan(0.01);
    const counts = [0, 0, 0];
    for (let i = 0; i < 3000; i++) counts[r.int(3)]!++;
    for (const c of counts) expect(c).toBeGreaterThan(900);
  });
});
