/**
 * Progress of a run: a redrawn bar with ETA on a terminal, periodic lines when stderr is not a terminal,
 * nothing (quiet), or one JSON object per event on stdout (JSON lines, for CI).
 */

/** How progress is shown. `auto` is `bar` on a terminal and `plain` otherwise. */
export type ProgressMode = 'auto' | 'bar' | 'plain' | 'quiet' | 'jsonl';

/** JSON-lines event: a run started. */
export interface RunEvent {
  /** Event type. */
  readonly type: 'run';
  /** Run id. */
  readonly id: string;
  /** Run folder. */
  readonly dir: string;
  /** Items planned. */
  readonly total: number;
  /** Items already finished (resumed run). */
  readonly reused: number;
}

/** JSON-lines event: a suite started. */
export interface SuiteEvent {
  /** Event type. */
  readonly type: 'suite';
  /** Suite name. */
  readonly suite: string;
  /** Items of the suite. */
  readonly total: number;
  /** Items already finished. */
  readonly reused: number;
}

/** JSON-lines event: an item finished. */
export interface ItemEvent {
  /** Event type. */
  readonly type: 'item';
  /** Suite name. */
  readonly suite: string;
  /** Item key. */
  readonly key: string;
  /** Items of the suite finished so far. */
  readonly done: number;
  /** Items of the suite. */
  readonly total: number;
  /** Time of the item, ms. */
  readonly ms: number;
  /** Estimated seconds left in the suite (null before the first computed item). */
  readonly etaSeconds: number | null;
}

/** JSON-lines event: a suite finished. */
export interface SuiteDoneEvent {
  /** Event type. */
  readonly type: 'suite-done';
  /** Suite name. */
  readonly suite: string;
  /** Seconds the suite took in this session. */
  readonly seconds: number;
}

/** JSON-lines event: a note for people. */
export interface MessageEvent {
  /** Event type. */
  readonly type: 'message';
  /** The note. */
  readonly text: string;
}

/** JSON-lines event: the run finished. */
export interface DoneEvent {
  /** Event type. */
  readonly type: 'done';
  /** Run id. */
  readonly id: string;
  /** Run folder. */
  readonly dir: string;
  /** Seconds of this session. */
  readonly seconds: number;
}

/** One JSON-lines event. */
export type ProgressEvent = RunEvent | SuiteEvent | ItemEvent | SuiteDoneEvent | MessageEvent | DoneEvent;

/** A writable text sink (process.stderr, or a test's buffer). */
export interface TextSink {
  /** Write text. */
  write(text: string): unknown;
  /** True for a terminal (enables the redrawn bar in `auto` mode). */
  readonly isTTY?: boolean;
}

/** Options of {@link Progress}. */
export interface ProgressOptions {
  /** Where the bar and lines go; default process.stderr. */
  readonly stderr?: TextSink;
  /** Where JSON lines go; default process.stdout. */
  readonly stdout?: TextSink;
  /** Clock in ms; default performance.now. */
  readonly now?: () => number;
  /** Bar width in characters; default 24. */
  readonly width?: number;
}

/** `95` → `1m35s`; null → `?`. */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/**
 * Remaining seconds from the items computed so far in this process (items reused from an earlier,
 * interrupted run cost nothing and are not counted); null before the first computed item.
 */
export function estimateRemaining(elapsedSeconds: number, computed: number, remaining: number): number | null {
  if (computed <= 0) return remaining === 0 ? 0 : null;
  return (elapsedSeconds / computed) * remaining;
}

/** Progress of one suite; created by {@link Progress.suite}. */
export class SuiteProgress {
  private done: number;
  private computed = 0;
  private doneCost: number;
  private computedCost = 0;
  private readonly totalCost: number;
  private readonly started: number;
  private lastDraw = -Infinity;
  private lastPlain: number;

  /** @internal Use {@link Progress.suite}. */
  constructor(
    private readonly owner: Progress,
    /** Suite name. */
    readonly name: string,
    /** Items of the suite. */
    readonly total: number,
    reused: number,
    cost?: { readonly total: number; readonly reused: number },
  ) {
    this.done = reused;
    this.totalCost = cost?.total ?? total;
    this.doneCost = cost?.reused ?? reused;
    this.started = owner.clock();
    this.lastPlain = this.started;
    owner.emit({ type: 'suite', suite: name, total, reused });
    if (owner.mode === 'plain') owner.line(`${name}: ${total} items${reused > 0 ? `, ${reused} already done` : ''}`);
    this.draw(true);
  }

  /**
   * Seconds left at the current rate, or null before the first computed item. Items are weighted by
   * their estimated cost, so a suite that starts with short prompts does not promise too early an end.
   */
  eta(): number | null {
    if (this.done >= this.total) return 0;
    return estimateRemaining((this.owner.clock() - this.started) / 1000, this.computedCost, Math.max(0, this.totalCost - this.doneCost));
  }

  /** Record one finished item (`ms`: its own time; `cost`: its estimated relative cost, default 1). */
  tick(key: string, ms: number, cost = 1): void {
    this.done++;
    this.computed++;
    this.doneCost += cost;
    this.computedCost += cost;
    this.owner.emit({ type: 'item', suite: this.name, key, done: this.done, total: this.total, ms: Math.round(ms * 100) / 100, etaSeconds: roundOrNull(this.eta()) });
    this.draw(false);
  }

  /** Mark the suite finished. */
  finish(): void {
    const seconds = (this.owner.clock() - this.started) / 1000;
    this.owner.emit({ type: 'suite-done', suite: this.name, seconds: Math.round(seconds * 10) / 10 });
    if (this.owner.mode === 'bar') {
      this.draw(true);
      this.owner.write('\n');
    } else if (this.owner.mode === 'plain') {
      this.owner.line(`${this.name}: done ${this.done}/${this.total} in ${formatDuration(seconds)}`);
    }
  }

  private draw(force: boolean): void {
    const now = this.owner.clock();
    if (this.owner.mode === 'bar') {
      if (!force && now - this.lastDraw < 100 && this.done < this.total) return;
      this.lastDraw = now;
      this.owner.write(`\r\x1b[2K${this.render(now)}`);
    } else if (this.owner.mode === 'plain' && !force) {
      // A line every 15 s at most (and the last item), so CI logs stay short.
      if (now - this.lastPlain >= 15_000 || this.done === this.total) {
        this.lastPlain = now;
        this.owner.line(this.render(now));
      }
    }
  }

  /** The bar line: name, bar, counts, percent, elapsed and ETA. */
  render(now = this.owner.clock()): string {
    const w = this.owner.width;
    const frac = this.total === 0 ? 1 : this.done / this.total;
    const filled = Math.round(frac * w);
    const bar = '#'.repeat(filled) + '-'.repeat(w - filled);
    const elapsed = (now - this.started) / 1000;
    return `${this.name.padEnd(10)} [${bar}] ${String(this.done).padStart(String(this.total).length)}/${this.total} ${String(Math.round(frac * 100)).padStart(3)}%  ${formatDuration(elapsed)} elapsed  ETA ${formatDuration(this.eta())}`;
  }
}

function roundOrNull(x: number | null): number | null {
  return x === null ? null : Math.round(x * 10) / 10;
}

/** Progress reporter of a run (see the module comment for the modes). */
export class Progress {
  /** The resolved mode (never `auto`). */
  readonly mode: Exclude<ProgressMode, 'auto'>;
  /** Bar width. */
  readonly width: number;
  private readonly stderr: TextSink;
  private readonly stdout: TextSink;
  private readonly now: () => number;

  /** Create a reporter; `auto` picks `bar` when stderr is a terminal. */
  constructor(mode: ProgressMode = 'auto', options: ProgressOptions = {}) {
    this.stderr = options.stderr ?? process.stderr;
    this.stdout = options.stdout ?? process.stdout;
    this.now = options.now ?? (() => performance.now());
    this.width = options.width ?? 24;
    this.mode = mode === 'auto' ? (this.stderr.isTTY ? 'bar' : 'plain') : mode;
  }

  /** @internal Current time, ms. */
  clock(): number {
    return this.now();
  }

  /**
   * Start a suite of `total` items of which `reused` are already done; `cost` gives the estimated total
   * and reused cost when items differ in size (default: one per item).
   */
  suite(name: string, total: number, reused: number, cost?: { readonly total: number; readonly reused: number }): SuiteProgress {
    return new SuiteProgress(this, name, total, reused, cost);
  }

  /** A note for people (shown in bar and plain modes, as an event in JSON lines). */
  message(text: string): void {
    this.emit({ type: 'message', text });
    if (this.mode === 'bar' || this.mode === 'plain') this.line(text);
  }

  /** A warning: shown on stderr in every mode (quiet included), and as a message event in JSON lines. */
  warn(text: string): void {
    this.emit({ type: 'message', text: `warning: ${text}` });
    if (this.mode === 'bar') this.line(`kvfold: warning: ${text}`);
    else this.stderr.write(`kvfold: warning: ${text}\n`);
  }

  /** @internal Emit a JSON-lines event (jsonl mode only). */
  emit(event: ProgressEvent): void {
    if (this.mode === 'jsonl') this.stdout.write(`${JSON.stringify(event)}\n`);
  }

  /** @internal Write raw text to stderr. */
  write(text: string): void {
    this.stderr.write(text);
  }

  /** @internal Write a whole line to stderr. */
  line(text: string): void {
    // In bar mode the line replaces the bar being drawn; the next tick redraws it below.
    this.stderr.write(this.mode === 'bar' ? `\r\x1b[2K${text}\n` : `${text}\n`);
  }
}
