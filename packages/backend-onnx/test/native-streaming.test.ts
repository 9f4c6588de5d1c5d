// The native CPU kernels write a large layer output with non-temporal stores (LayerOut::stream in
// cpu_kernels.cc); the threshold is process-wide, so these tests force it to 0 to run that path on small
// shapes, and every output must be the bytes of the ordinary stores, whatever the row width (rows of an
// odd number of floats start off the 16-byte boundary the stores need) and head count.
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { bindKernels, ConfigError, hostTensor, layerFromHost, type HostTensor, type LayerCache } from '@kvfold/core';
import { randomNeighbourPlan, randomSegmentPlan, uploadNeighbourPlan, uploadSegmentPlan } from '@kvfold/testkit';
import { createOnnxKernels, onnxKernelBackend, type OnnxKernels, type OnnxTensor } from '../src/index.js';
import { NativeSessionFactory, type NativeAddon } from '../src/session.js';
import { nativeBuilt, randInt, randomLayer, rng } from './helpers.js';

const RUNS = Number(process.env.KVFOLD_RUNS ?? 40);
const NEVER = Number.MAX_SAFE_INTEGER;

const bytesOf = (t: HostTensor): Uint8Array => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);

describe.skipIf(!nativeBuilt)('native CPU kernels: streamed layer outputs are the bytes of cached ones (skipped unless `build:native` ran)', () => {
  const k = nativeBuilt ? createOnnxKernels({ native: 'require', threads: 2 }) : undefined;
  const initial = k?.nativeStreamingMinBytes();
  afterAll(() => {
    if (initial !== undefined) k!.nativeStreamingMinBytes(initial);
    k?.release();
  });

  const fields = (l: LayerCache<OnnxTensor>): OnnxTensor[] => [l.keys, l.values, l.positions, l.counts, l.scores];

  /** `f`'s outputs with streaming off, then forced on: byte-identical, and the threshold restored. */
  async function same(what: string, f: () => OnnxTensor[]): Promise<void> {
    k!.nativeStreamingMinBytes(NEVER);
    const cached = await Promise.all(f().map((t) => k!.toHost(t)));
    k!.nativeStreamingMinBytes(0);
    const streamed = await Promise.all(f().map((t) => k!.toHost(t)));
    k!.nativeStreamingMinBytes(NEVER);
    expect(streamed.length).toBe(cached.length);
    for (const [i, t] of cached.entries()) {
      expect(streamed[i]!.shape, `${what} [${i}] shape`).toEqual(t.shape);
      expect(Buffer.compare(bytesOf(t), bytesOf(streamed[i]!)), `${what} [${i}] bytes`).toBe(0);
    }
  }

  it('reports the threshold, sets it, and refuses what is not a byte count', () => {
    expect(k!.info.kernelPath).toBe('native-cpu');
    // Default: the size of the largest cache (at least one L2's worth on any machine this runs on).
    expect(initial).toBeGreaterThanOrEqual(256 * 1024);
    expect(Number.isSafeInteger(initial)).toBe(true);
    expect(k!.nativeStreamingMinBytes(12345)).toBe(initial);
    expect(k!.nativeStreamingMinBytes()).toBe(12345);
    expect(k!.nativeStreamingMinBytes(initial)).toBe(12345);
    for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      const e = (() => {
        try {
          k!.nativeStreamingMinBytes(bad);
        } catch (err) {
          return err;
        }
        return undefined;
      })();
      expect(e, String(bad)).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).issues[0]!.path).toBe('/bytes');
    }
    expect(k!.nativeStreamingMinBytes()).toBe(initial);
  });

  it('gather, mergeSegments and mergeIntoNeighbours on random shapes', async () => {
    const shape = fc.record({ H: fc.integer({ min: 1, max: 7 }), L: fc.integer({ min: 1, max: 48 }), D: fc.integer({ min: 1, max: 37 }), seed: fc.integer() });
    await fc.assert(
      fc.asyncProperty(shape, async ({ H, L, D, seed }) => {
        const r = rng(seed);
        const host = randomLayer(H, L, D, r);
        const layer = () => layerFromHost(k!, host);
        const tag = `H=${H} L=${L} D=${D}`;
        const m = randInt(r, 0, L);
        const idx = hostTensor('int32', [H, m], Int32Array.from({ length: H * m }, () => randInt(r, 0, L - 1)));
        await same(`gather ${tag}`, () => fields(k!.gather(layer(), k!.fromHost(idx))));
        const sp = randomSegmentPlan(H, L, r);
        const valueScale = r() < 0.5 ? ('count' as const) : ('none' as const);
        await same(`mergeSegments ${valueScale} ${tag}`, () =>
          fields(k!.mergeSegments(layer(), uploadSegmentPlan(k!, sp, valueScale))),
        );
        const K = randInt(r, 0, L);
        const np = randomNeighbourPlan(H, L, K, L, r, randInt(r, 0, L - K));
        await same(`mergeIntoNeighbours K=${K} ${tag}`, () =>
          fields(k!.mergeIntoNeighbours(layer(), uploadNeighbourPlan(k!, np))),
        );
      }),
      { numRuns: RUNS },
    );
  });

  it('a policy-sized layer (32 heads x 512 slots x 128): all three kernels', async () => {
    const r = rng(21);
    const [H, L, D] = [32, 512, 128];
    const host = randomLayer(H, L, D, r);
    const idx = hostTensor('int32', [H, 256], Int32Array.from({ length: H * 256 }, (_, i) => 2 * (i % 256)));
    await same('gather', () => fields(k!.gather(layerFromHost(k!, host), k!.fromHost(idx))));
    const sp = randomSegmentPlan(H, L, r, 0.2, 4);
    await same('mergeSegments', () =>
      fields(k!.mergeSegments(layerFromHost(k!, host), uploadSegmentPlan(k!, sp, 'count'))),
    );
    const np = randomNeighbourPlan(H, L, 256, 8, r);
    await same('mergeIntoNeighbours', () =>
      fields(k!.mergeIntoNeighbours(layerFromHost(k!, host), uploadNeighbourPlan(k!, np))),
    );
  });
});

describe('nativeStreamingMinBytes without the entry point', () => {
  it('reads undefined (no threshold) from an addon built before it existed, instead of throwing', () => {
    // A stand-in for an older addon: every call but streamingMinBytes (no session is created here).
    const older = { ortVersion: () => '1.30.0', apiVersion: 23, apiAvailable: true, createSession: () => ({}), run: () => [], release: () => {}, opsCalls: () => -1 } satisfies NativeAddon;
    const factory = new NativeSessionFactory(older, '/nonexistent/libkvfold_ops.so', { executionProvider: 'cpu', threads: 1, deviceId: 0 });
    expect(factory.nativeStreamingMinBytes(0)).toBe(-1);
    const k = bindKernels(onnxKernelBackend(factory, { onnxruntimeNode: '1.30.0', executionProvider: 'cpu', kernelPath: 'native-cpu', observePath: 'function-bodies', fallbacks: [] })) as OnnxKernels;
    expect(k.nativeStreamingMinBytes()).toBeUndefined();
    expect(k.nativeStreamingMinBytes(0)).toBeUndefined();
  });
});
