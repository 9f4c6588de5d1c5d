import { ConfigError, type ConfigIssue } from './errors.js';
import { createRng, type Rng } from './rng.js';

/**
 * Token choice and streamed text shared by every kvfold generation loop (the tfjs runtime's and the
 * transformers.js adapter's), so both decode and stop identically.
 * @module
 */

/** Sampling settings of {@link sampleToken}. */
export interface SamplingOptions {
  /** 0 = greedy. */
  readonly temperature: number;
  /** 0 = no limit. */
  readonly topK: number;
  /** 1 = off. */
  readonly topP: number;
}

/**
 * Pick the next token: the arg-max at temperature 0 (ties to the lower id), else a draw from the
 * temperature-scaled softmax restricted to the top-k and the top-p nucleus.
 */
export function sampleToken(logits: ArrayLike<number>, options: SamplingOptions, rng: Rng): number {
  if (options.temperature === 0) {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
    return best;
  }
  const order = Array.from({ length: logits.length }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]! || a - b);
  const k = options.topK > 0 ? Math.min(options.topK, order.length) : order.length;
  const cand = order.slice(0, k);
  const max = logits[cand[0]!]!;
  const w = cand.map((i) => Math.exp((logits[i]! - max) / options.temperature));
  const z = w.reduce((a, b) => a + b, 0);
  let keep = cand.length;
  if (options.topP < 1) {
    let acc = 0;
    for (let j = 0; j < cand.length; j++) {
      acc += w[j]! / z;
      if (acc >= options.topP) {
        keep = j + 1;
        break;
      }
    }
  }
  const zk = w.slice(0, keep).reduce((a, b) => a + b, 0);
  let u = rng.next() * zk;
  for (let j = 0; j < keep; j++) {
    u -= w[j]!;
    if (u < 0) return cand[j]!;
  }
  return cand[keep - 1]!;
}

/** What a generation loop's streaming callback receives for each generated token. */
export interface TokenEvent {
  /** The token id. */
  readonly token: number;
  /** 0 for the first generated token. */
  readonly index: number;
  /**
   * New text that became final with this token: held back while it may still be the start of a stop
   * string or an incomplete UTF-8 sequence, so concatenating every event's text gives the result's text.
   */
  readonly text: string;
}

/** Why generation ended. */
export type FinishReason = 'eos' | 'stop' | 'length';

/** What a generation loop returns, whatever runtime ran the model. */
export interface GenerationResult {
  /** Generated text (without the prompt, cut before a matched stop string). */
  readonly text: string;
  /** Generated token ids (including a final EOS or stop token). */
  readonly tokens: number[];
  /** Number of prompt tokens. */
  readonly promptTokens: number;
  /** Why generation ended. */
  readonly finishReason: FinishReason;
  /** Wall-clock timings. */
  readonly timings: {
    /** Prompt forward pass plus the policy's prefill, in ms. */
    readonly prefillMs: number;
    /** All decode steps (forward + policy step + sampling), in ms. */
    readonly decodeMs: number;
    /** Number of decode forward passes (the first token comes from the prefill logits). */
    readonly decodeSteps: number;
    /** `decodeSteps / decodeMs`, in tokens per second (0 when there was no decode step). */
    readonly decodeTokensPerSecond: number;
    /** Whole call, in ms. */
    readonly totalMs: number;
  };
  /** Cache statistics. */
  readonly cache: {
    /** Largest cache size seen (after any append or compression), in bytes. */
    readonly peakBytes: number;
    /** Cache size at the end, in bytes. */
    readonly finalBytes: number;
    /** Slots per layer at the end. */
    readonly lengths: number[];
    /** Resolved budget in slots (when a policy ran). */
    readonly budget?: number;
    /** True positions consumed (prompt + decoded tokens fed back). */
    readonly positions: number;
  };
}

/** Decoding settings every generation loop accepts. */
export interface DecodingOptions {
  /** Most tokens to generate. Default 64. */
  readonly maxNewTokens?: number;
  /** 0 (default) is greedy decoding; above 0 samples from `softmax(logits / temperature)`. */
  readonly temperature?: number;
  /** Sample only among the `topK` most likely tokens (0 = no limit, the default). */
  readonly topK?: number;
  /** Nucleus sampling: the smallest set of tokens whose probability reaches `topP` (default 1 = off). */
  readonly topP?: number;
  /** Seed of sampling (and of the policy's RNG). Default 0. */
  readonly seed?: number;
  /** Stop strings and/or stop token ids (besides the model's EOS). */
  readonly stop?: readonly (string | number)[];
  /** Stop at the model's EOS ids. Default true. */
  readonly stopAtEos?: boolean;
  /** Called after each generated token (streaming). */
  readonly onToken?: (event: TokenEvent) => void;
}

/** {@link DecodingOptions} validated, with defaults filled in. */
export interface CheckedDecoding {
  /** Most tokens to generate. */
  readonly maxNewTokens: number;
  /** Token choice. */
  readonly sampling: SamplingOptions;
  /** Seed of sampling. */
  readonly seed: number;
}

/**
 * Validate {@link DecodingOptions} and fill defaults.
 * @param extra - Issues the caller found in its own options, reported together.
 * @throws ConfigError naming every invalid field with its allowed values.
 */
export function checkDecodingOptions(o: DecodingOptions, context: string, extra: readonly ConfigIssue[] = []): CheckedDecoding {
  const issues: ConfigIssue[] = [...extra];
  const maxNewTokens = o.maxNewTokens ?? 64;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) issues.push({ path: '/maxNewTokens', rule: 'minimum', message: `must be an integer >= 0, got ${maxNewTokens}`, allowed: { minimum: 0 } });
  const temperature = o.temperature ?? 0;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) issues.push({ path: '/temperature', rule: 'minimum', message: `must be a finite number >= 0, got ${temperature}`, allowed: { minimum: 0 } });
  const topK = o.topK ?? 0;
  if (!Number.isInteger(topK) || topK < 0) issues.push({ path: '/topK', rule: 'minimum', message: `must be an integer >= 0 (0 = off), got ${topK}`, allowed: { minimum: 0 } });
  const topP = o.topP ?? 1;
  if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) issues.push({ path: '/topP', rule: 'maximum', message: `must be in (0, 1], got ${topP}`, allowed: '(0, 1]' });
  const seed = o.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) issues.push({ path: '/seed', rule: 'maximum', message: `must be an integer in 0..4294967295, got ${seed}`, allowed: '0..4294967295' });
  const stop: readonly unknown[] = Array.isArray(o.stop) ? o.stop : [];
  if (o.stop !== undefined && !Array.isArray(o.stop)) issues.push({ path: '/stop', rule: 'type', message: `must be a list of stop strings or token ids, got ${JSON.stringify(o.stop)}`, allowed: 'array' });
  for (const [i, s] of stop.entries()) {
    if (typeof s === 'string' ? s.length === 0 : typeof s !== 'number' || !Number.isInteger(s) || s < 0) {
      issues.push({ path: `/stop/${i}`, rule: 'type', message: `must be a non-empty string or a token id, got ${JSON.stringify(s)}`, allowed: 'string | integer >= 0' });
    }
  }
  if (issues.length > 0) throw new ConfigError(issues, context);
  return { maxNewTokens, sampling: { temperature, topK, topP }, seed };
}

/** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
function pendingStopPrefix(text: string, stops: readonly string[]): number {
  let best = 0;
  for (const s of stops) {
    for (let k = Math.min(s.length - 1, text.length); k > best; k--) {
      if (text.endsWith(s.slice(0, k))) {
        best = k;
        break;
      }
    }
  }
  return best;
}

/** What {@link TextStream.push} returns for one token. */
export interface TextStep {
  /** New text that became final with this token (what a streaming callback receives). */
  readonly delta: string;
  /** The generated text so far, cut before a matched stop string. */
  readonly text: string;
  /** A stop string matched. */
  readonly stopped: boolean;
}

/**
 * Streamed text of a generation with stop strings: text is held back while it may still be the start of
 * a stop string or an incomplete UTF-8 sequence, so concatenating every step's `delta` gives the final text.
 */
export class TextStream {
  private emitted = 0;
  private readonly longest: number;

  /** Watch for `stops` (empty strings are not allowed; {@link checkDecodingOptions} rejects them). */
  constructor(private readonly stops: readonly string[]) {
    this.longest = Math.max(0, ...stops.map((s) => s.length));
  }

  /**
   * Take the whole decoded text after a new token. `last` says generation ends with this token anyway
   * (EOS, a stop id, the length limit): everything left is emitted.
   */
  push(decoded: string, last: boolean): TextStep {
    let text = decoded;
    let stopped = false;
    if (this.stops.length > 0) {
      const from = Math.max(0, this.emitted - this.longest);
      let cut = -1;
      for (const s of this.stops) {
        const at = decoded.indexOf(s, from);
        if (at >= 0 && (cut < 0 || at < cut)) cut = at;
      }
      if (cut >= 0) {
        text = decoded.slice(0, cut);
        stopped = true;
      }
    }
    if (last || stopped) {
      const delta = text.slice(this.emitted);
      this.emitted = text.length;
      return { delta, text, stopped };
    }
    let safe = text.length - pendingStopPrefix(text, this.stops);
    while (safe > this.emitted && text.charCodeAt(safe - 1) === 0xfffd) safe--;
    const delta = safe > this.emitted ? text.slice(this.emitted, safe) : '';
    this.emitted = Math.max(this.emitted, safe);
    return { delta, text, stopped };
  }
}

/** What {@link runGeneration} drives: one sequence of some runtime, and how its tokens read. */
export interface GenerationDriver {
  /** Run the prompt (the policy's prefill included); returns the next token's logits. */
  prefill(): Promise<Float32Array>;
  /** Feed one generated token (the policy's step included); returns the next token's logits. */
  decode(token: number): Promise<Float32Array>;
  /** Text of generated ids (special tokens skipped). */
  detokenize(ids: readonly number[]): string;
  /** End-of-sequence ids of the model. */
  readonly eosTokenIds: Iterable<number>;
}

/**
 * The generation loop shared by every runtime: prefill, then pick a token (greedy or seeded sampling on a
 * stream forked from the policies' seed), stream its text, stop at EOS, a stop id, a stop string or the
 * length limit, and feed it back. Returns everything of a {@link GenerationResult} but the cache statistics.
 * @throws ConfigError for invalid options; whatever the driver throws.
 */
export async function runGeneration(driver: GenerationDriver, promptTokens: number, options: DecodingOptions, context = 'generate options'): Promise<Omit<GenerationResult, 'cache'>> {
  const t0 = performance.now();
  const { maxNewTokens, sampling, seed } = checkDecodingOptions(options, context);
  const stopStrings = (options.stop ?? []).filter((s): s is string => typeof s === 'string');
  const stopIds = new Set((options.stop ?? []).filter((s): s is number => typeof s === 'number'));
  const eos = new Set(options.stopAtEos === false ? [] : driver.eosTokenIds);
  // Sampling gets its own stream so it never shares draws with the policies' RNG.
  const rng = createRng(seed).fork(0x73616d70);
  const stream = new TextStream(stopStrings);
  const tokens: number[] = [];
  let text = '';
  let finishReason: FinishReason = 'length';
  let decodeSteps = 0;
  let logits = await driver.prefill();
  const prefillMs = performance.now() - t0;
  const tDecode = performance.now();
  while (tokens.length < maxNewTokens) {
    const token = sampleToken(logits, sampling, rng);
    tokens.push(token);
    if (eos.has(token)) finishReason = 'eos';
    else if (stopIds.has(token)) finishReason = 'stop';
    const ended = eos.has(token) || stopIds.has(token) || tokens.length >= maxNewTokens;
    const step = stream.push(driver.detokenize(tokens), ended);
    text = step.text;
    if (step.stopped) finishReason = 'stop';
    options.onToken?.({ token, index: tokens.length - 1, text: step.delta });
    if (ended || step.stopped) break;
    logits = await driver.decode(token);
    decodeSteps++;
  }
  const decodeMs = decodeSteps > 0 ? performance.now() - tDecode : 0;
  return {
    text,
    tokens,
    promptTokens,
    finishReason,
    timings: { prefillMs, decodeMs, decodeSteps, decodeTokensPerSecond: decodeSteps > 0 && decodeMs > 0 ? (decodeSteps * 1000) / decodeMs : 0, totalMs: performance.now() - t0 },
  };
}
