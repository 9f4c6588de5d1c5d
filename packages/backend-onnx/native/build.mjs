#!/usr/bin/env node
// Opt-in native build of @kvfold/backend-onnx: `pnpm --filter @kvfold/backend-onnx build:native`.
//
// Builds into native/build/ (git-ignored):
//   libkvfold_ops.so       ai.kvfold custom ops, CPU kernels                         (g++)
//   libkvfold_ops_cuda.so  the same ops with CPU + CUDAExecutionProvider kernels     (nvcc, sm_90; skipped without nvcc)
//   kvfold_ort.node        N-API addon: ORT sessions with the library registered,    (g++, linked to onnxruntime-node's
//                          linked to the libonnxruntime.so.1 onnxruntime-node ships   libonnxruntime.so.1)
//   manifest.json          versions the backend checks before it loads anything
//
// Needs: g++ (C++17), Node headers from the local Node install (never downloaded), ORT C/C++ headers. The
// ORT headers come from $KVFOLD_ORT_INCLUDE, or the npm package com.github.asus4.onnxruntime@0.4.9 (ORT 1.29
// headers, API 29, which the 1.30 runtime accepts), fetched once with `npm pack` (150 MB download; only
// the headers are kept). Flags: --if-possible exits 0 with a message when a prerequisite is missing (for CI);
// --no-cuda skips nvcc. Env: CXX, NVCC, KVFOLD_CUDA_ARCH (default sm_90), KVFOLD_NODE_INCLUDE, KVFOLD_ORT_INCLUDE,
// KVFOLD_FETCH_TIMEOUT (seconds for the header download, default 180), KVFOLD_JOBS (parallel compiles).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const build = join(here, 'build');
const deps = join(build, 'deps');
const args = new Set(process.argv.slice(2));
const ifPossible = args.has('--if-possible');
const require = createRequire(join(here, '..', 'package.json'));
const t0 = performance.now();
const HEADERS_PKG = 'com.github.asus4.onnxruntime@0.4.9';
const HEADERS_IN_PKG = 'package/Plugins/iOS~/onnxruntime.xcframework/ios-arm64_x86_64-simulator/onnxruntime.framework/Headers';

function log(msg) {
  process.stdout.write(`[build:native] ${msg}\n`);
}

/** Stop: a missing prerequisite is a skip with --if-possible, an error otherwise. */
function missing(msg) {
  log(`${ifPossible ? 'skipped' : 'error'}: ${msg}`);
  process.exit(ifPossible ? 0 : 1);
}

function which(cmd) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const f = join(dir, cmd);
    if (dir && existsSync(f)) return f;
  }
  return undefined;
}

/** Run one compiler step; resolves with its duration, or exits the build when it fails. */
function run(cmd, argv, what) {
  const t = performance.now();
  return new Promise((done) => {
    const child = spawn(cmd, argv, { stdio: 'inherit' });
    child.on('error', (e) => {
      log(`error: ${what} could not start (${e.message})`);
      process.exit(1);
    });
    child.on('close', (code, signal) => {
      if (code !== 0) {
        log(`error: ${what} failed (${cmd} exited with ${code ?? signal})`);
        process.exit(1);
      }
      log(`${what}: ${((performance.now() - t) / 1000).toFixed(1)} s`);
      done();
    });
  });
}

/** Run independent steps `jobs` at a time (each step is a function returning a promise). */
async function parallel(steps, jobs) {
  const queue = [...steps];
  await Promise.all(Array.from({ length: Math.min(jobs, queue.length) }, async () => {
    while (queue.length) await queue.shift()();
  }));
}

// --- onnxruntime-node: version and the folder of libonnxruntime.so.1
let ortVersion, ortBin;
try {
  const pkgFile = require.resolve('onnxruntime-node/package.json');
  ortVersion = require(pkgFile).version;
  ortBin = realpathSync(join(dirname(pkgFile), 'bin', 'napi-v6', process.platform, process.arch));
} catch (e) {
  missing(`onnxruntime-node is not installed (${e.message}); run pnpm install first`);
}
if (process.platform !== 'linux') missing(`the native build supports linux only (this is ${process.platform})`);
if (!existsSync(join(ortBin, 'libonnxruntime.so.1'))) missing(`no libonnxruntime.so.1 in ${ortBin}`);

// --- compilers and headers
const cxx = process.env.CXX ?? which('g++') ?? which('c++');
if (!cxx) missing('no C++ compiler (g++) on PATH; install build-essential or set CXX');
const nodeInclude = process.env.KVFOLD_NODE_INCLUDE ?? join(dirname(dirname(process.execPath)), 'include', 'node');
if (!existsSync(join(nodeInclude, 'node_api.h'))) {
  missing(`Node headers not found in ${nodeInclude} (node_api.h); install your Node distribution's headers (e.g. apt install libnode-dev / nodejs-dev) or set KVFOLD_NODE_INCLUDE`);
}

function ortHeaders() {
  if (process.env.KVFOLD_ORT_INCLUDE) return process.env.KVFOLD_ORT_INCLUDE;
  const dir = join(deps, HEADERS_IN_PKG);
  if (existsSync(join(dir, 'onnxruntime_cxx_api.h'))) return dir;
  mkdirSync(deps, { recursive: true });
  log(`fetching ORT headers: npm pack ${HEADERS_PKG} (150 MB, once)`);
  const t = performance.now();
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const timeout = Number(process.env.KVFOLD_FETCH_TIMEOUT ?? 180) * 1000;
  const r = spawnSync(npm, ['pack', HEADERS_PKG, '--pack-destination', deps, '--silent'], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', timeout });
  if (r.status !== 0) {
    for (const f of readdirSync(deps)) if (f.endsWith('.tgz')) rmSync(join(deps, f), { force: true });
    missing(`npm pack ${HEADERS_PKG} ${r.error?.code === 'ETIMEDOUT' ? `timed out after ${timeout / 1000} s` : 'failed'}; set KVFOLD_ORT_INCLUDE to a folder with onnxruntime_cxx_api.h (ORT >= 1.16)`);
  }
  const tgz = readdirSync(deps).find((f) => f.endsWith('.tgz'));
  if (!tgz) missing('npm pack produced no tarball');
  try {
    execFileSync('tar', ['xzf', join(deps, tgz), '-C', deps, '--wildcards', `${HEADERS_IN_PKG}/*`]);
  } catch (e) {
    rmSync(join(deps, 'package'), { recursive: true, force: true });
    missing(`could not extract the ORT headers from ${tgz} (${e.message.split('\n')[0]})`);
  } finally {
    rmSync(join(deps, tgz), { force: true });
  }
  log(`ORT headers: ${((performance.now() - t) / 1000).toFixed(1)} s`);
  return dir;
}
const ortInclude = ortHeaders();
if (!existsSync(join(ortInclude, 'onnxruntime_cxx_api.h'))) missing(`no onnxruntime_cxx_api.h in ${ortInclude}`);
const apiVersion = Number(/#define ORT_API_VERSION (\d+)/.exec(execFileSync('grep', ['-m1', 'define ORT_API_VERSION', join(ortInclude, 'onnxruntime_c_api.h')], { encoding: 'utf8' }))?.[1]);

// --- build
mkdirSync(build, { recursive: true });
rmSync(join(build, 'manifest.json'), { force: true });
const inc = ['-I', join(here, 'include'), '-I', ortInclude];
// -ffp-contract=off: no fused multiply-add, so adjacentCosine's float32 lanes round as the reference's do.
const common = ['-O3', '-std=c++17', '-ffp-contract=off', '-fPIC', '-fvisibility=hidden', '-Wall', '-Wextra'];
const src = (f) => join(here, 'src', f);
const out = (f) => join(build, f);

const nvcc = args.has('--no-cuda') ? undefined : (process.env.NVCC ?? which('nvcc') ?? (existsSync('/usr/local/cuda/bin/nvcc') ? '/usr/local/cuda/bin/nvcc' : undefined));
const arch = process.env.KVFOLD_CUDA_ARCH ?? 'sm_90';
const jobs = Number(process.env.KVFOLD_JOBS ?? availableParallelism());
// Objects first (independent, so they compile in parallel), then the links. cpu_kernels.o serves both libraries.
const compiles = [
  () => run(cxx, [...common, ...inc, '-c', src('cpu_kernels.cc'), '-o', out('cpu_kernels.o')], 'cpu_kernels.o'),
  () => run(cxx, [...common, ...inc, '-c', src('ort_ops.cc'), '-o', out('ort_ops.o')], 'ort_ops.o (CPU ops)'),
  () =>
    run(
      cxx,
      [...common, '-shared', '-DNODE_GYP_MODULE_NAME=kvfold_ort', '-I', nodeInclude, '-I', ortInclude, join(here, 'addon', 'kvfold_ort_addon.cc'), '-o', out('kvfold_ort.node'),
        '-L', ortBin, '-l:libonnxruntime.so.1', `-Wl,-rpath,${ortBin}`, '-ldl'],
      'kvfold_ort.node (N-API addon)',
    ),
];
if (nvcc) {
  compiles.push(
    () => run(nvcc, ['-std=c++17', '-O2', `-arch=${arch}`, '-Xcompiler', '-fPIC,-fvisibility=hidden', '-I', join(here, 'include'), '-c', src('cuda_kernels.cu'), '-o', out('cuda_kernels.o')], `cuda_kernels.o (nvcc ${arch})`),
    () => run(cxx, [...common, ...inc, '-DKVFOLD_WITH_CUDA', '-c', src('ort_ops.cc'), '-o', out('ort_ops_cuda.o')], 'ort_ops_cuda.o (CPU + CUDA ops)'),
  );
} else {
  log('CUDA kernels skipped: nvcc not found (set NVCC or put it on PATH); the CPU library and addon are built');
}
await parallel(compiles, jobs);
const links = [() => run(cxx, ['-shared', out('ort_ops.o'), out('cpu_kernels.o'), '-o', out('libkvfold_ops.so')], 'libkvfold_ops.so (link)')];
let cudaLibrary;
if (nvcc) {
  // nvcc links cudart statically: the library loads on machines without a GPU (its CPU kernels still work there).
  links.push(() => run(nvcc, ['-shared', `-arch=${arch}`, out('ort_ops_cuda.o'), out('cpu_kernels.o'), out('cuda_kernels.o'), '-o', out('libkvfold_ops_cuda.so')], 'libkvfold_ops_cuda.so (link)'));
  cudaLibrary = 'libkvfold_ops_cuda.so';
}
await parallel(links, jobs);

// --- check that the addon loads against onnxruntime-node's runtime, then record what was built
const probe = spawnSync(process.execPath, ['-e', `process.stdout.write(require(${JSON.stringify(out('kvfold_ort.node'))}).ortVersion())`], { encoding: 'utf8' });
if (probe.status !== 0) {
  log(`error: the addon does not load: ${probe.stderr.trim()}`);
  process.exit(1);
}
if (probe.stdout !== ortVersion) log(`warning: the addon reports libonnxruntime ${probe.stdout}, onnxruntime-node is ${ortVersion}`);
const manifest = {
  onnxruntimeNode: ortVersion,
  ortApiVersion: apiVersion,
  addon: 'kvfold_ort.node',
  cpuLibrary: 'libkvfold_ops.so',
  ...(cudaLibrary ? { cudaLibrary } : {}),
  builtAt: new Date().toISOString(),
};
writeFileSync(join(build, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
log(`done in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${resolve(build)} (onnxruntime ${probe.stdout}, headers API ${apiVersion}${cudaLibrary ? ', CUDA kernels' : ''})`);
