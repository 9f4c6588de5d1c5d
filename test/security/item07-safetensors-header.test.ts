// Issue 10, item 7: the safetensors header length read from a file is capped (100 MB) and checked before
// anything of that size is allocated.
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ModelError } from '@kvfold/core';
import { MAX_SAFETENSORS_HEADER, SafetensorsFile } from '@kvfold/runtime';
import { caught, temp } from './helpers.js';

describe('item 7: safetensors header cap', () => {
  it('a sparse file claiming a 2e9-byte header is refused at once, naming the cap', async () => {
    const file = join(temp('kvfold-sec-st-'), 'model.safetensors');
    const fd = openSync(file, 'w');
    const head = Buffer.alloc(8);
    head.writeBigUInt64LE(2_000_000_000n);
    writeSync(fd, head);
    ftruncateSync(fd, 8 + 2_000_000_000); // sparse: no disk blocks, but the size the header needs
    closeSync(fd);
    const before = process.memoryUsage().arrayBuffers;
    const t0 = performance.now();
    const e = await caught(() => SafetensorsFile.open(file));
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 1024 * 1024);
    expect(e).toBeInstanceOf(ModelError);
    expect(e.message).toContain(`the safetensors header claims 2000000000 bytes; at most ${MAX_SAFETENSORS_HEADER} are read`);
    expect(e.details).toMatchObject({ reason: 'header', headerLength: 2_000_000_000 });
  });
});
