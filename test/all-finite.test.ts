// allFinite(tensor, bound?, from?): one kernel declared in core's registry, implemented by tfjs and onnx,
// used by the guard. The bound (sec) and the newest-slots range (what the guard scans at a decode step)
// give the reference's answer on every backend, and bad arguments the same typed error everywhere; the
// guard's decode-step scan runs no other kernel (no index to upload, check and gather).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BackendUnavailableError, ErrorCode, KVFold, VALUE_LIMIT, createContext, definePlugin, hostLayer, hostTensor, layerFromHost, type KVFoldError, type KVKernels } from '@kvfold/core';
import reference from '@kvfold/backend-reference';
import tfjs from '@kvfold/backend-tfjs';
import onnx, { defaultNativeDir } from '@kvfold/backend-onnx';
import { passThroughPolicy } from '@kvfold/testkit';

const kv = KVFold.create({ plugins: [reference, tfjs, onnx, definePlugin({ name: 'fx', policies: [passThroughPolicy('echo', ['attention'])] })] });
const variants: [string, string, Record<string, unknown>][] = [
  ['reference', 'reference', {}],
  ['tfjs (wasm)', 'tfjs', { engine: 'wasm' }],
  ['onnx (function bodies)', 'onnx', { native: 'off', threads: 1 }],
];
if (existsSync(join(defaultNativeDir(), 'manifest.json'))) variants.push(['onnx (native CPU kernels)', 'onnx', { native: 'require', threads: 1 }]);
const available: [string, KVKernels<unknown>][] = [];
for (const [label, name, options] of variants) {
  try {
    available.push([label, await kv.backend(name, options)]);
  } catch (e) {
    if (!(e instanceof BackendUnavailableError)) throw e;
  }
}
const below = VALUE_LIMIT - 2 ** 40; // the largest float32 below 2^64

async function codeAndMessage(p: Promise<unknown>): Promise<[string, string]> {
  try {
    await p;
  } catch (e) {
    return [(e as KVFoldError).code, (e as Error).message];
  }
  return ['none', ''];
}

describe('allFinite with a bound and a slot range, on every backend', () => {
  it('runs on the reference, tfjs and onnx backends', () => {
    expect(available.map(([l]) => l).slice(0, 3)).toEqual(['reference', 'tfjs (wasm)', 'onnx (function bodies)']);
  });
  for (const [label, k] of available) {
    it(`${label}: the bound is exact at 2^64 and the range reads only the newest slots of every head`, async () => {
      const H = 3;
      const L = 5;
      const D = 4;
      const at = (h: number, slot: number, x: number): number[] => {
        const data = Array.from({ length: H * L * D }, (_, i) => Math.sin(i));
        data[(h * L + slot) * D + 1] = x;
        return data;
      };
      const t = (data: number[]) => k.fromHost(hostTensor('float32', [H, L, D], data));
      expect(await k.allFinite(t(at(1, 2, below)), VALUE_LIMIT)).toBe(true);
      expect(await k.allFinite(t(at(1, 2, VALUE_LIMIT)), VALUE_LIMIT)).toBe(false);
      expect(await k.allFinite(t(at(1, 2, -VALUE_LIMIT)), VALUE_LIMIT)).toBe(false);
      expect(await k.allFinite(t(at(1, 2, VALUE_LIMIT)))).toBe(true);
      for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, VALUE_LIMIT]) {
        for (let h = 0; h < H; h++) {
          // A bad value in slot 2 of head h: seen from slot 0, 1 or 2 on, not from slot 3 on.
          for (let from = 0; from <= L; from++) expect(await k.allFinite(t(at(h, 2, bad)), VALUE_LIMIT, from), `${bad} head ${h} from ${from}`).toBe(from > 2);
        }
      }
      expect(await k.allFinite(k.fromHost(hostTensor('int32', [2, 2], [1, 2, 3, 4])), VALUE_LIMIT, 1)).toBe(true);
      expect(await k.allFinite(k.fromHost(hostTensor('float32', [2, 0, 3])), undefined, 0)).toBe(true);
    });
  }
  it('bad bounds and ranges are the same typed error with the same message on every backend', async () => {
    const seen: string[] = [];
    for (const [label, k] of available) {
      const t = k.fromHost(hostTensor('float32', [2, 3, 2], new Float32Array(12)));
      const errors = [
        await codeAndMessage(k.allFinite(t, 3)),
        await codeAndMessage(k.allFinite(t, undefined, 4)),
        await codeAndMessage(k.allFinite(t, undefined, 1.5)),
        await codeAndMessage(k.allFinite(k.fromHost(hostTensor('float32', [4], new Float32Array(4))), undefined, 1)),
      ];
      expect(errors.map(([c]) => c), label).toEqual([ErrorCode.Config, ErrorCode.Shape, ErrorCode.Shape, ErrorCode.Shape]);
      seen.push(JSON.stringify(errors));
    }
    expect(new Set(seen).size).toBe(1);
  });
});

describe("the guard's decode-step scan", () => {
  it('scans the appended slots with allFinite alone, and finds a bad value there on every backend', async () => {
    for (const [label, base] of available) {
      const calls: string[] = [];
      const k = new Proxy(base, {
        get(target, prop, receiver) {
          const v = Reflect.get(target, prop, receiver) as unknown;
          if (typeof v !== 'function' || !target.kernels().some((i) => i.name === prop)) return v;
          return (...args: unknown[]) => {
            calls.push(String(prop));
            return (v as (...a: unknown[]) => unknown).apply(target, args);
          };
        },
      });
      const policy = kv.policy('echo');
      const H = 2;
      const L = 6;
      const D = 3;
      const keys = Array.from({ length: H * L * D }, (_, i) => i / 10);
      const layer = (k2: number[]) => layerFromHost(k, hostLayer({ heads: H, length: L, headDim: D, keys: k2, values: keys }));
      const att = () => ({ attention: k.fromHost(hostTensor('float32', [H, L], new Float32Array(H * L))) });
      const ctx = createContext({ kernels: k, budget: 4, promptLength: 4, step: 1, newTokens: 2 });
      await policy.step(layer(keys), att(), ctx);
      expect(calls, label).toContain('allFinite');
      expect(calls.filter((c) => c !== 'allFinite'), label).toEqual([]);
      const newest = [...keys];
      newest[(1 * L + 5) * D] = Number.NaN; // head 1, the last slot
      await expect(policy.step(layer(newest), att(), ctx), label).rejects.toMatchObject({ code: ErrorCode.NonFinite, details: { field: 'keys' } });
      const older = [...keys];
      older[(1 * L + 3) * D] = Number.NaN; // head 1, slot 3: before this step's two slots, scanned at prefill
      await expect(policy.step(layer(older), att(), ctx), label).resolves.toBeDefined();
    }
  });
});
