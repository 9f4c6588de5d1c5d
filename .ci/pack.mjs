#!/usr/bin/env node
// Install kvfold as a user would: pack every public workspace package (no "private": true), lint each
// tarball with publint and @arethetypeswrong/cli, then in fresh projects outside the workspace, with plain
// npm (no .npmrc of the repository):
//
// 1. every tarball but @kvfold/transformers, and no onnxruntime-node (an optional peer whose install script
//    would download CUDA files): every documentation snippet that does not use transformers.js (comparing
//    what it prints with what the docs show), `npx kvfold --help`, `npx kvfold demo --preset smoke`, a bench
//    run on transformers.js refused with the install hint, and an ESM + TypeScript consumer compiled with
//    `tsc --strict` against the installed types;
// 2. the transformers.js user's project: every tarball plus @huggingface/transformers, installed the way the
//    docs tell users without internet access (ONNXRUNTIME_NODE_INSTALL=skip), then the transformers.js
//    snippets, `npx kvfold export-onnx embedded`, a `tsc --strict` consumer on that export, and a bench
//    run with the tfjs and transformers.js runtimes side by side.
//
// Usage: node .ci/pack.mjs [--keep]     (--keep leaves the temporary folder for inspection)
// The packages must be built first (`pnpm build`). Exits non-zero on the first failure.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { publicPackages } from './packages.mjs';
import { findSnippets } from './snippets.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const keep = process.argv.includes('--keep');
const PNPM = ['-y', 'pnpm@12.4.2'];
const TFJS_BANNER = 'looks like you are running TensorFlow.js in Node.js';
const started = Date.now();
const say = (s) => console.log(`[pack ${Math.round((Date.now() - started) / 1000)}s] ${s}`);

/** The environment of a plain npm in a user's shell: nothing pnpm or npm scripts export, no ORT setting. */
function userEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(npm_|pnpm_|PNPM_)|^ONNXRUNTIME_NODE_INSTALL/i.test(k)) env[k] = v;
  return env;
}

/** Run a command; on failure print its output and exit. Returns stdout and stderr. */
function run(cmd, args, cwd, what, env = userEnv()) {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) {
    console.error(`FAILED: ${what}\n$ ${cmd} ${args.join(' ')}  (in ${cwd}, exit ${r.status ?? r.signal})\n${r.stdout}\n${r.stderr}`);
    process.exit(1);
  }
  return { stdout: r.stdout, stderr: r.stderr };
}

function fail(what, detail = '') {
  console.error(`FAILED: ${what}${detail ? `\n${detail}` : ''}`);
  process.exit(1);
}

const work = mkdtempSync(join(tmpdir(), 'kvfold-pack-'));
const tarballs = join(work, 'tarballs');
mkdirSync(tarballs);
const packages = publicPackages(root);
say(`${packages.length} public packages: ${packages.map((p) => p.manifest.name).join(', ')}`);

// 1. Pack, and check what went in.
for (const p of packages) {
  if (!existsSync(join(root, p.dir, 'dist/index.js'))) fail(`${p.manifest.name} is not built (${p.dir}/dist/index.js missing); run pnpm build first`);
}
run('npx', [...PNPM, '-r', ...packages.flatMap((p) => ['--filter', `./${p.dir}`]), 'pack', '--pack-destination', tarballs], root, 'pnpm pack of the public packages', process.env);
const files = readdirSync(tarballs).filter((f) => f.endsWith('.tgz')).map((f) => join(tarballs, f));
if (files.length !== packages.length) fail(`expected ${packages.length} tarballs, found ${files.length}`);
/** Tarball path -> package name. */
const nameOf = new Map();
for (const tgz of files) {
  const list = execFileSync('tar', ['-tzf', tgz], { encoding: 'utf8' }).split('\n').filter(Boolean);
  for (const need of ['package/package.json', 'package/LICENSE', 'package/README.md', 'package/dist/index.js', 'package/dist/index.d.ts']) {
    if (!list.includes(need)) fail(`${basename(tgz)} lacks ${need.slice('package/'.length)}`);
  }
  const stray = list.filter((f) => /\.tsbuildinfo$|\/test\/|\.test\.|\/node_modules\//.test(f));
  if (stray.length > 0) fail(`${basename(tgz)} ships build or test files`, stray.join('\n'));
  const manifest = execFileSync('tar', ['-xzOf', tgz, 'package/package.json'], { encoding: 'utf8' });
  if (manifest.includes('workspace:')) fail(`${basename(tgz)}: package.json still has workspace: ranges`);
  nameOf.set(tgz, JSON.parse(manifest).name);
}
say(`packed ${files.length} tarballs; each has package.json, LICENSE, README.md, dist/index.js and .d.ts, and no build-info or test files`);

// 2. publint and Are the Types Wrong? on every tarball (ESM-only packages: the esm-only profile).
const bin = (name) => join(root, 'node_modules', '.bin', name);
/** Run a linter on a tarball without blocking, so two run at once. */
function lint(cmd, args, what) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => resolve({ code, out, what }));
  });
}
const jobs = files.flatMap((tgz) => [
  () => lint(bin('publint'), ['run', tgz, '--strict'], `publint --strict ${basename(tgz)}`),
  () => lint(bin('attw'), [tgz, '--profile', 'esm-only', '--format', 'ascii'], `attw --profile esm-only ${basename(tgz)}`),
]);
const results = [];
await Promise.all([0, 1].map(async () => {
  for (let job = jobs.shift(); job; job = jobs.shift()) results.push(await job());
}));
for (const r of results) {
  if (r.code !== 0 || (r.what.startsWith('publint') && !/All good!/.test(r.out))) fail(`${r.what} reported problems`, r.out);
}
say('publint --strict and attw --profile esm-only are clean for every tarball');

// 3. A fresh project outside the workspace; plain npm, no repository .npmrc, no onnxruntime-node. Every
// tarball but @kvfold/transformers: npm installs a package's required peers, and that one's,
// @huggingface/transformers, depends on onnxruntime-node (project 2 covers it).
const TJS_ADAPTER = '@kvfold/transformers';
const typescript = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).devDependencies.typescript;

/** A fresh npm project in `dir` with the consumer `source` compiled by `tsc --strict` (ESM, NodeNext). */
function freshProject(dir, source) {
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify({ name: 'kvfold-consumer', private: true, type: 'module' }, null, 2)}\n`);
  cpSync(join(root, '.ci/consumer', source), join(dir, source));
  const tsconfig = JSON.parse(readFileSync(join(root, '.ci/consumer/tsconfig.json'), 'utf8'));
  writeFileSync(join(dir, 'tsconfig.json'), `${JSON.stringify({ ...tsconfig, files: [source] }, null, 2)}\n`);
}

/** Exactly one @kvfold/core in the project's node_modules. */
function oneCore(dir) {
  const cores = execFileSync('find', [join(dir, 'node_modules'), '-path', '*/@kvfold/core/package.json'], { encoding: 'utf8' }).trim().split('\n');
  if (cores.length !== 1) fail(`expected one @kvfold/core in node_modules, found ${cores.length}`, cores.join('\n'));
}

const project = join(work, 'project');
freshProject(project, 'consumer.ts');
const withoutTjs = files.filter((f) => nameOf.get(f) !== TJS_ADAPTER);
if (withoutTjs.length !== files.length - 1) fail(`no ${TJS_ADAPTER} tarball among ${files.map((f) => basename(f)).join(', ')}`);
run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', ...withoutTjs, `typescript@${typescript}`, '@types/node@^20.19.0'], project, 'npm install of the tarballs');
for (const absent of ['onnxruntime-node', '@huggingface/transformers', TJS_ADAPTER]) {
  if (existsSync(join(project, 'node_modules', absent))) fail(`npm installed ${absent} although nothing but an optional peer names it`);
}
oneCore(project);
say(`npm installed ${withoutTjs.length} tarballs into a fresh project: one @kvfold/core, no onnxruntime-node, no transformers.js`);

// 4. The documentation's snippets, from the installed packages; those using transformers.js run in project 2.
const snippets = findSnippets(root);
const byFile = new Map();
for (const s of snippets) if (!byFile.has(s.file) || s.prints !== undefined) byFile.set(s.file, s);
const usesTjs = (file) => /from '@(?:huggingface|kvfold)\/transformers'/.test(readFileSync(join(root, file), 'utf8'));
/** Run each snippet in `dir` and compare what it prints with what its document shows. */
function runSnippets(dir, list) {
  for (const s of list) {
    const target = join(dir, basename(s.file));
    cpSync(join(root, s.file), target);
    const { stdout, stderr } = run('node', [target], dir, `snippet ${s.file}`);
    if (s.prints !== undefined && stdout !== s.prints) fail(`snippet ${s.file} printed something else than ${s.doc} shows`, `shown:\n${s.prints}\nprinted:\n${stdout}`);
    if (`${stdout}${stderr}`.includes(TFJS_BANNER)) fail(`snippet ${s.file} printed tfjs's Node.js banner`);
  }
}
const plainSnippets = [...byFile.values()].filter((s) => !usesTjs(s.file));
const tjsSnippets = [...byFile.values()].filter((s) => usesTjs(s.file));
runSnippets(project, plainSnippets);
say(`${plainSnippets.length} documentation snippets ran and printed what the docs show`);

// 4b. The tfjs backend's threads from the installed package: its pthread worker file ships, and resolves its tfjs
// dependency from there (Node then runs tfjs-backend-wasm's threaded build, and kvfold's kernels on two threads).
const threadCheck = [
  "import { createTfjsKernels } from '@kvfold/backend-tfjs';",
  "const k = await createTfjsKernels({ engine: 'wasm', threads: 2, logger: { debug() {}, info() {}, warn: (m) => console.log('warn:', m), error: (m) => console.log('error:', m) } });",
  'console.log(k.describe());',
].join('\n');
writeFileSync(join(project, 'threads.mjs'), `${threadCheck}\n`);
const threads = run('node', ['threads.mjs'], project, 'the tfjs backend with threads: 2');
if (!threads.stdout.includes("the threaded build's shared heap") || !threads.stdout.includes('on 2 threads')) fail('the installed tfjs backend with threads: 2 did not run on the threaded build', threads.stdout);
say('the installed tfjs backend with threads: 2 starts tfjs-backend-wasm\'s threaded build and splits its kernels over two threads');

// 5. The command line.
const help = run('npx', ['kvfold', '--help'], project, 'npx kvfold --help');
if (!help.stdout.includes('Usage: kvfold') || !help.stdout.includes('demo')) fail('npx kvfold --help printed no usage', help.stdout);
const demo = run('npx', ['kvfold', 'demo', '--preset', 'smoke', '--out', 'runs'], project, 'npx kvfold demo --preset smoke');
for (const want of ['| policy | budget |', '- passkey: ', 'report: ', 'plots:  ']) if (!demo.stdout.includes(want)) fail(`kvfold demo --preset smoke printed no "${want}"`, demo.stdout);
if (!demo.stderr.startsWith('kvfold demo runs')) fail('kvfold demo did not say what it runs before it started', demo.stderr);
if (`${demo.stdout}${demo.stderr}`.includes(TFJS_BANNER)) fail("kvfold demo printed tfjs's Node.js banner");
const runs = readdirSync(join(project, 'runs'));
if (runs.length !== 1 || !existsSync(join(project, 'runs', runs[0], 'report.md'))) fail('kvfold demo wrote no report.md');
const refused = spawnSync('npx', ['kvfold', 'bench', '--preset', 'smoke', '--suite', 'needle', '--runtime', 'transformers.js', '--out', 'runs-tjs'], { cwd: project, env: userEnv(), encoding: 'utf8' });
const hint = 'ONNXRUNTIME_NODE_INSTALL=skip npm install @kvfold/transformers @huggingface/transformers@^4.3.1';
if (refused.status !== 1 || !refused.stderr.includes('[KVF_BACKEND_UNAVAILABLE]') || !refused.stderr.includes(hint)) fail('kvfold bench --runtime transformers.js without its peers did not fail with the install hint', `${refused.stdout}\n${refused.stderr}`);
if (existsSync(join(project, 'runs-tjs')) && readdirSync(join(project, 'runs-tjs')).length > 0) fail('kvfold bench --runtime transformers.js without its peers created a run folder');
say('npx kvfold --help and npx kvfold demo --preset smoke work (legend, report and plots paths, no tfjs banner); a bench on transformers.js without it says how to install it (exit 1, no run folder)');

// 6. ESM + TypeScript consumer: tsc --strict against the installed declarations, then run it. The
// compile uses `tsc --init`'s skipLibCheck; a second pass checks every declaration file too and fails on
// errors in kvfold's own (third-party ones, such as tfjs's or onnx-proto's globals from @types packages
// they do not depend on, are not ours to fix and are listed only).
/** Compile the project's consumer with tsc --strict, then check kvfold's declaration files with skipLibCheck off. */
function compileConsumer(dir, what) {
  run('npx', ['tsc', '-p', 'tsconfig.json'], dir, `tsc --strict on ${what}`);
  const libCheck = spawnSync('npx', ['tsc', '-p', 'tsconfig.json', '--noEmit', '--skipLibCheck', 'false'], { cwd: dir, env: userEnv(), encoding: 'utf8' });
  const errors = libCheck.stdout.split('\n').filter((l) => /error TS\d+/.test(l));
  const ours = errors.filter((l) => !l.startsWith('node_modules/') || /^node_modules\/(@kvfold\/|kvfold\/)/.test(l));
  if (ours.length > 0) fail(`kvfold's declaration files do not compile under --strict with skipLibCheck off (${what})`, ours.join('\n'));
  const others = [...new Set(errors.map((l) => l.split('(')[0]))];
  say(`declaration files of every kvfold package ${what} uses compile with skipLibCheck off${others.length ? ` (third-party declarations with errors, not ours: ${others.join(', ')})` : ''}`);
}
compileConsumer(project, 'the consumer');
const consumer = run('node', ['dist/consumer.js'], project, 'the compiled consumer');
process.stdout.write(`${consumer.stdout.trimEnd().replace(/^/gm, '  ')}\n`);
say('the tsc --strict ESM consumer compiled and ran');

// 7. The transformers.js user's project: every tarball plus @huggingface/transformers, installed offline the
// way the docs say (ONNXRUNTIME_NODE_INSTALL=skip: onnxruntime-node's CPU provider is bundled, its install
// script would download CUDA files).
const tjsProject = join(work, 'project-transformers');
freshProject(tjsProject, 'transformers.ts');
const tjsVersion = JSON.parse(readFileSync(join(root, 'packages/transformers/package.json'), 'utf8')).devDependencies['@huggingface/transformers'];
run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', ...files, `@huggingface/transformers@${tjsVersion}`, `typescript@${typescript}`, '@types/node@^20.19.0'], tjsProject, 'npm install of the tarballs with transformers.js', { ...userEnv(), ONNXRUNTIME_NODE_INSTALL: 'skip' });
const ortBin = join(tjsProject, 'node_modules/onnxruntime-node/bin/napi-v6', process.platform, process.arch);
if (!existsSync(ortBin)) fail(`onnxruntime-node came without its ${process.platform}/${process.arch} binaries`);
if (existsSync(join(ortBin, 'libonnxruntime_providers_cuda.so'))) fail('ONNXRUNTIME_NODE_INSTALL=skip did not skip the CUDA download');
oneCore(tjsProject);
say(`npm installed every tarball with @huggingface/transformers@${tjsVersion} (ONNXRUNTIME_NODE_INSTALL=skip: no CUDA download, one @kvfold/core)`);
runSnippets(tjsProject, tjsSnippets);
say(`${tjsSnippets.length} transformers.js documentation snippets ran and printed what the docs show`);
const exported = run('npx', ['kvfold', 'export-onnx', 'embedded', 'tiny-onnx'], tjsProject, 'npx kvfold export-onnx embedded tiny-onnx');
for (const f of ['onnx/model.onnx', 'config.json', 'generation_config.json', 'tokenizer.json']) {
  if (!existsSync(join(tjsProject, 'tiny-onnx', f))) fail(`kvfold export-onnx wrote no ${f}`, exported.stdout + exported.stderr);
}
compileConsumer(tjsProject, 'the transformers.js consumer');
const tjsConsumer = run('node', ['dist/transformers.js'], tjsProject, 'the compiled transformers.js consumer');
process.stdout.write(`${tjsConsumer.stdout.trimEnd().replace(/^/gm, '  ')}\n`);
const sideBySide = run('npx', ['kvfold', 'bench', '--preset', 'smoke', '--suite', 'needle', '--runtime', 'tfjs,transformers.js', '--quiet', '--out', 'runs'], tjsProject, 'npx kvfold bench --runtime tfjs,transformers.js');
// Same prompts, policies, budgets and seeds: each transformers.js row answers as its tfjs twin. KVMerger's
// row is only required to exist: its layer-0 merges pick among exactly tied key cosines, and float
// rounding may pick another link on each runtime (docs/transformers-js.md).
const rows = new Map(sideBySide.stdout.split('\n').filter((l) => l.startsWith('| ')).map((l) => l.split('|').map((c) => c.trim().replace(/ †$/, ''))).map((c) => [`${c[1]}|${c[2]}`, c.slice(3, 5).join('|')]));
const twins = [...rows.keys()].filter((k) => k.includes(' (transformers.js)|'));
const differ = twins.filter((k) => !k.startsWith('kvmerger ') && rows.get(k) !== rows.get(k.replace(' (transformers.js)', '')));
if (twins.length < 5 || differ.length > 0) fail(`kvfold bench --runtime tfjs,transformers.js: ${twins.length} transformers.js rows, ${differ.length} answering otherwise than tfjs`, sideBySide.stdout);
say(`npx kvfold export-onnx, the tsc --strict transformers.js consumer on its export, and kvfold bench on both runtimes work (${twins.length} transformers.js rows; all but kvmerger's with their tfjs twin's passkey and recall)`);

if (keep) say(`kept ${work}`);
else rmSync(work, { recursive: true, force: true });
say('done');
