import { describe, expect, it } from 'vitest';
import { Progress, estimateRemaining, formatDuration, type ProgressEvent } from '../src/index.js';

function sink(isTTY = false) {
  const chunks: string[] = [];
  return { chunks, isTTY, write: (s: string) => chunks.push(s), text: () => chunks.join('') };
}

describe('progress', () => {
  it('formats durations and estimates the remaining time from computed items only', () => {
    expect(formatDuration(5)).toBe('5s');
    expect(formatDuration(95)).toBe('1m35s');
    expect(formatDuration(3725)).toBe('1h02m');
    expect(formatDuration(null)).toBe('?');
    expect(estimateRemaining(10, 5, 20)).toBe(40);
    expect(estimateRemaining(10, 0, 20)).toBeNull();
    expect(estimateRemaining(0, 0, 0)).toBe(0);
  });

  it('bar mode redraws one line with counts, percent and ETA', () => {
    let t = 0;
    const err = sink(true);
    const p = new Progress('auto', { stderr: err, stdout: sink(), now: () => t });
    expect(p.mode).toBe('bar');
    const s = p.suite('needle', 4, 0);
    t = 1000;
    s.tick('a', 1000);
    t = 2000;
    s.tick('b', 1000);
    expect(s.render(2000)).toContain(' 2/4 ');
    expect(s.render(2000)).toContain('50%');
    expect(s.render(2000)).toContain('ETA 2s');
    s.finish();
    expect(err.text()).toContain('\r\x1b[2K');
  });

  it('reused items count as done but not into the rate', () => {
    let t = 0;
    const p = new Progress('quiet', { stderr: sink(), stdout: sink(), now: () => t });
    const s = p.suite('fidelity', 10, 6);
    expect(s.eta()).toBeNull();
    t = 3000;
    s.tick('x', 3000);
    // 1 item computed in 3 s, 3 left
    expect(s.eta()).toBeCloseTo(9, 9);
  });

  it('jsonl mode writes one JSON event per line to stdout and nothing to stderr', () => {
    const out = sink();
    const err = sink();
    const p = new Progress('jsonl', { stderr: err, stdout: out, now: () => 0 });
    const s = p.suite('speed', 2, 0);
    s.tick('k1', 12.345);
    s.tick('k2', 1);
    s.finish();
    p.message('hello');
    const events = out.text().trim().split('\n').map((l) => JSON.parse(l) as ProgressEvent);
    expect(events.map((e) => e.type)).toEqual(['suite', 'item', 'item', 'suite-done', 'message']);
    expect(events[1]).toMatchObject({ type: 'item', suite: 'speed', key: 'k1', done: 1, total: 2, ms: 12.35 });
    expect(err.text()).toBe('');
  });

  it('quiet mode writes nothing; plain mode writes lines, not redraws', () => {
    const qo = sink(), qe = sink();
    const q = new Progress('quiet', { stderr: qe, stdout: qo });
    const s = q.suite('needle', 1, 0);
    s.tick('a', 1);
    s.finish();
    q.message('x');
    expect(qo.text() + qe.text()).toBe('');
    const pe = sink(false);
    const p = new Progress('auto', { stderr: pe, stdout: sink() });
    expect(p.mode).toBe('plain');
    const ps = p.suite('needle', 1, 0);
    ps.tick('a', 1);
    ps.finish();
    expect(pe.text()).not.toContain('\r');
    expect(pe.text()).toContain('needle: done 1/1');
  });
});

describe('cost-weighted ETA', () => {
  it('weights items by their estimated cost', () => {
    let t = 0;
    const p = new Progress('quiet', { stderr: sink(), stdout: sink(), now: () => t });
    // 4 items: two cheap (cost 1) then two expensive (cost 9); after the cheap ones a per-item rate
    // would promise 2 s left, the cost-weighted rate 18 s.
    const s = p.suite('needle', 4, 0, { total: 20, reused: 0 });
    t = 1000;
    s.tick('a', 1000, 1);
    t = 2000;
    s.tick('b', 1000, 1);
    expect(s.eta()).toBeCloseTo(18, 9);
    t = 11_000;
    s.tick('c', 9000, 9);
    expect(s.eta()).toBeCloseTo(9, 9);
  });
});
