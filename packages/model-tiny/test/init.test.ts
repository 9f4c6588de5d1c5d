import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ModelError, ShapeError } from '@kvfold/core';
import { encodeSafetensors } from '@kvfold/runtime';
import { toHfConfig } from '../src/config.js';
import { trainArgs, PRESETS } from '../src/train/args.js';
import { loadInitWeights } from '../src/train/init.js';
import { initParams } from '../src/train/model.js';
import type { NamedTensor } from '../src/train/tensors.js';

/** A weights folder as train.js writes it, for preset `tiny`, with `edit` applied to its tensors first. */
function folder(edit: (t: Record<string, NamedTensor>) => void = () => {}, preset = 'tiny'): string {
  const dir = mkdtempSync(join(tmpdir(), 'kvf-init-'));
  const t = initParams(PRESETS[preset]!, 3);
  edit(t);
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(t, { format: 'pt' }));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(toHfConfig(PRESETS[preset]!, {})));
  return dir;
}

describe('train.js --init (fine-tuning from a weights folder)', () => {
  it('parses --init as a resolved folder; absent means a seeded start', () => {
    expect(trainArgs(['--init', 'weights']).init).toMatch(/\/weights$/);
    expect(trainArgs([]).init).toBeNull();
  });

  it('loads every tensor of a folder that matches the preset, values unchanged', async () => {
    const want = initParams(PRESETS.tiny!, 3);
    const got = await loadInitWeights(folder(), PRESETS.tiny!, 'tiny');
    expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
    for (const [name, t] of Object.entries(want)) {
      expect(got[name]!.shape).toEqual(t.shape);
      expect(Array.from(got[name]!.data)).toEqual(Array.from(t.data));
    }
  });

  it('refuses a folder of another preset, naming the config field', async () => {
    await expect(loadInitWeights(folder(() => {}, 'main'), PRESETS.tiny!, 'tiny')).rejects.toThrow(ShapeError);
    await expect(loadInitWeights(folder(() => {}, 'main'), PRESETS.tiny!, 'tiny')).rejects.toThrow(/config\.json has hidden = 64, preset tiny has 32/);
  });

  it('refuses a tensor of the wrong shape, a missing tensor and an extra one, naming it', async () => {
    const q = 'model.layers.1.self_attn.q_proj.weight';
    const wrong = folder((t) => (t[q] = { shape: [16, 32], data: new Float32Array(16 * 32) }));
    await expect(loadInitWeights(wrong, PRESETS.tiny!, 'tiny')).rejects.toThrow(/tensor model\.layers\.1\.self_attn\.q_proj\.weight has shape \[16, 32\], preset tiny needs \[32, 32\]/);
    const missing = folder((t) => delete t['model.norm.weight']);
    await expect(loadInitWeights(missing, PRESETS.tiny!, 'tiny')).rejects.toThrow(/lacks tensor model\.norm\.weight/);
    const extra = folder((t) => (t['adam.m.model.norm.weight'] = { shape: [32], data: new Float32Array(32) }));
    await expect(loadInitWeights(extra, PRESETS.tiny!, 'tiny')).rejects.toThrow(/does not use: adam\.m\.model\.norm\.weight/);
  });

  it('refuses a folder without weights, or with a file larger than the preset can be, before reading it', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'kvf-init-'));
    await expect(loadInitWeights(empty, PRESETS.tiny!, 'tiny')).rejects.toThrow(ModelError);
    const big = folder();
    writeFileSync(join(big, 'model.safetensors'), new Uint8Array(8 << 20));
    await expect(loadInitWeights(big, PRESETS.tiny!, 'tiny')).rejects.toThrow(/more than preset tiny's model can take/);
  });
});
