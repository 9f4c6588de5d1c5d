// Build wasm/kernels.wasm from assembly/kernels.ts with AssemblyScript (a dev dependency).
// The .wasm is committed so the package works without this step; test/wasm.test.ts rebuilds it and
// checks the bytes match. Usage: node scripts/build-wasm.mjs [outFile] [--unshared]
// (--unshared: an ordinary memory with no maximum instead of a shared one; the test compares it with the
// module src/index.ts derives from the committed binary.)
import { main } from 'assemblyscript/asc';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const unshared = args.includes('--unshared');
const out = args.find((a) => !a.startsWith('--')) ?? join(pkg, 'wasm/kernels.wasm');
const { error, stderr } = await main([
  join(pkg, 'assembly/kernels.ts'),
  '--outFile', out,
  '-O3', '--noAssert',
  '--runtime', 'stub',
  ...(unshared ? ['--importMemory', '--initialMemory', '1', '--enable', 'simd'] : ['--importMemory', '--sharedMemory', '--initialMemory', '1', '--maximumMemory', '65536', '--enable', 'simd,threads']),
]);
if (error) {
  console.error(stderr.toString());
  console.error(error.message);
  process.exit(1);
}
