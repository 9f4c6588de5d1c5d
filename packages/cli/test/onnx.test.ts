import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main, type CliIO } from '../src/index.js';

async function run(args: string[], cwd = process.cwd()) {
  const o: string[] = [];
  const e: string[] = [];
  const io: CliIO = { cwd, stdout: { write: (s: string) => o.push(s) }, stderr: { write: (s: string) => e.push(s) } };
  const code = await main(args, io);
  return { code, out: o.join(''), err: e.join('') };
}

describe('kvfold export-onnx and kvfold onnx expose-attention', () => {
  it('exports the embedded model, shows progress, and refuses to overwrite without --force', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvfold-cli-onnx-'));
    const r = await run(['export-onnx', 'embedded', 'tiny', '--proportional'], dir);
    expect(r.code).toBe(0);
    expect(r.out).toContain('onnx/model_proportional.onnx');
    expect(r.err).toContain('kvfold: write: onnx/model.onnx');
    const cfg = JSON.parse(readFileSync(join(dir, 'tiny', 'config.json'), 'utf8')) as { kvfold_onnx: unknown };
    expect(cfg.kvfold_onnx).toMatchObject({ layout: 'kvfold', attention_sums: { group_reduction: 'mean' }, proportional_file: 'model_proportional' });
    const again = await run(['export-onnx', 'embedded', 'tiny'], dir);
    expect(again.code).toBe(2);
    expect(again.err).toMatch(/already exists.*--force/);
    expect((await run(['export-onnx', 'embedded', 'tiny', '--force', '--group-reduction', 'max'], dir)).code).toBe(0);
    expect((await run(['export-onnx', 'embedded', 'x', '--group-reduction', 'median'], dir)).code).toBe(2);
    expect((await run(['export-onnx', '/no/such/folder', 'x'], dir)).code).toBe(2);
  });

  it('expose-attention writes a model with attention_sums and names the problem when it cannot', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvfold-cli-expose-'));
    expect((await run(['export-onnx', 'embedded', 'plain', '--no-attention-sums'], dir)).code).toBe(0);
    const r = await run(['onnx', 'expose-attention', 'plain/onnx/model.onnx', 'exposed/model.onnx'], dir);
    expect(r.code).toBe(0);
    expect(r.out).toContain('added attention_sums.0..2');
    expect(existsSync(join(dir, 'exposed', 'model.onnx'))).toBe(true);
    const twice = await run(['onnx', 'expose-attention', 'exposed/model.onnx', 'again.onnx'], dir);
    expect(twice.code).toBe(2);
    expect(twice.err).toContain('already has attention_sums');
  });
});
