import { randomBytes } from 'node:crypto';
import { open, rename, rm, stat, writeFile } from 'node:fs/promises';

/** Write through a temporary name and rename, so a reader never sees half a file. */
export async function writeAtomic(path: string, chunks: Uint8Array | string | readonly Uint8Array[]): Promise<void> {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    if (typeof chunks === 'string' || chunks instanceof Uint8Array) {
      await writeFile(tmp, chunks);
    } else {
      const fh = await open(tmp, 'w');
      try {
        for (const c of chunks) await fh.write(c);
      } finally {
        await fh.close();
      }
    }
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** Whether a path exists. */
export const exists = (p: string): Promise<boolean> =>
  stat(p).then(
    () => true,
    () => false,
  );

