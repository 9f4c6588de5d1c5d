import { existsSync, readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { ModelError, ShapeError } from '@kvfold/core';
import { fromHfConfig, type TinyModelConfig } from '../config.js';
import { paramShapes } from './model.js';
import { readTensors, type NamedTensor } from './tensors.js';

/** Room for the safetensors header and metadata on top of the parameters' float32 bytes. */
const HEADER_SLACK = 1 << 20;

/**
 * The parameters of a Hugging Face weights folder (`config.json` + `model.safetensors`) as the starting
 * point of a fine-tune (`train.js --init DIR`). The folder must hold exactly the preset's model: its
 * config must match the preset field by field, and every tensor the preset needs must be there with
 * the preset's shape (optimiser moments are not read; a fine-tune starts a fresh AdamW state).
 * @throws {@link ModelError} when a file is missing or larger than the preset's model
 *   can be; {@link ShapeError} naming the field or tensor that disagrees with the preset.
 */
export async function loadInitWeights(dir: string, cfg: TinyModelConfig, preset: string): Promise<Record<string, NamedTensor>> {
  const configPath = resolve(dir, 'config.json');
  const file = resolve(dir, 'model.safetensors');
  for (const p of [configPath, file]) if (!existsSync(p)) throw new ModelError(`--init: ${p} does not exist (a weights folder holds config.json and model.safetensors)`, { file: p });
  const found = fromHfConfig(JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, number>);
  for (const k of Object.keys(cfg) as (keyof TinyModelConfig)[]) {
    if (found[k] !== cfg[k]) throw new ShapeError(`--init: ${configPath} has ${k} = ${String(found[k])}, preset ${preset} has ${cfg[k]}`, { field: k, found: found[k], expected: cfg[k] });
  }
  const shapes = paramShapes(cfg);
  const maxBytes = shapes.reduce((s, [, sh]) => s + 4 * sh.reduce((a, b) => a * b, 1), 0) + HEADER_SLACK;
  const size = statSync(file).size;
  if (size > maxBytes) throw new ModelError(`--init: ${file} is ${size} bytes, more than preset ${preset}'s model can take (${maxBytes})`, { file, size, maxBytes });
  const { tensors } = await readTensors(readFileSync(file), file);
  const out: Record<string, NamedTensor> = {};
  for (const [name, shape] of shapes) {
    const t = tensors[name];
    if (!t) throw new ShapeError(`--init: ${file} lacks tensor ${name} of preset ${preset}`, { tensor: name, expected: shape });
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ShapeError(`--init: tensor ${name} has shape [${t.shape.join(', ')}], preset ${preset} needs [${shape.join(', ')}]`, { tensor: name, found: t.shape, expected: shape });
    }
    out[name] = t;
  }
  const extra = Object.keys(tensors).filter((n) => !(n in out));
  if (extra.length > 0) throw new ShapeError(`--init: ${file} has tensors preset ${preset} does not use: ${extra.slice(0, 5).join(', ')}`, { extra });
  return out;
}
