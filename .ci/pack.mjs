#!/usr/bin/env node
// Install kvfold as a user would: pack every public workspace package (no "private": true), lint each
// tarball with publint and @arethetypeswrong/cli, install the tarballs into a fresh project outside the
// workspace with plain npm (no .npmrc of the repository, no onnxruntime-node: it is an optional peer, and
// its install script would download CUDA files), then run there: every documentation snippet (comparing
// what it prints with what the docs show), `npx kvfold --help`, `npx kvfold demo --preset smoke`, and an
// ESM + TypeScript consumer compiled with `tsc --strict` against the installed types.
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
for (const tgz of files) {
  const list = execFileSync('tar', ['-tzf', tgz], { encoding: 'utf8' }).split('\n').filter(Boolean);
  for (const need of ['package/package.json', 'package/LICENSE', 'package/README.md', 'package/dist/index.js', 'package/dist/index.d.ts']) {
    if (!list.includes(need)) fail(`${basename(tgz)} lacks ${need.slice('package/'.length)}`);
  }
  const stray = list.filter((f) => /\.tsbuildinfo$|\/test\/|\.test\.|\/node_modules\//.test(f));
  if (stray.length > 0) fail(`${basename(tgz)} ships build or test files`, stray.join('\n'));
  const manifest = execFileSync('tar', ['-xzOf', tgz, 'package/package.json'], { encoding: 'utf8' });
  if (manifest.includes('workspace:')) fail(`${basename(tgz)}: package.json still has workspace: ranges`);
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

// 3. A fresh project outside the workspace; plain npm, no repository .npmrc, no onnxruntime-node.
const project = join(work, 'project');
mkdirSync(project);
writeFileSync(join(project, 'package.json'), `${JSON.stringify({ name: 'kvfold-consumer', private: true, type: 'module' }, null, 2)}\n`);
cpSync(join(root, '.ci/consumer/consumer.ts'), join(project, 'consumer.ts'));
cpSync(join(root, '.ci/consumer/tsconfig.json'), join(project, 'tsconfig.json'));
const typescript = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).devDependencies.typescript;
run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', ...files, `typescript@${typescript}`, '@types/node@^20.19.0'], project, 'npm install of the tarballs');
if (existsSync(join(project, 'node_modules/onnxruntime-node'))) fail('npm installed onnxruntime-node although it is only an optional peer');
const cores = execFileSync('find', [join(project, 'node_modules'), '-path', '*/@kvfold/core/package.json'], { encoding: 'utf8' }).trim().split('\n');
if (cores.length !== 1) fail(`expected one @kvfold/core in node_modules, found ${cores.length}`, cores.join('\n'));
say('npm installed every tarball into a fresh project: one @kvfold/core, no onnxruntime-node');

// 4. The documentation's snippets, from the installed packages.
const snippets = findSnippets(root);
const byFile = new Map();
for (const s of snippets) if (!byFile.has(s.file) || s.prints !== undefined) byFile.set(s.file, s);
for (const [file, s] of byFile) {
  const target = join(project, basename(file));
  cpSync(join(root, file), target);
  const { stdout, stderr } = run('node', [target], project, `snippet ${file}`);
  if (s.prints !== undefined && stdout !== s.prints) fail(`snippet ${file} printed something else than ${s.doc} shows`, `shown:\n${s.prints}\nprinted:\n${stdout}`);
  if (`${stdout}${stderr}`.includes(TFJS_BANNER)) fail(`snippet ${file} printed tfjs's Node.js banner`);
}
say(`${byFile.size} documentation snippets ran and printed what the docs show`);

// 5. The command line.
const help = run('npx', ['kvfold', '--help'], project, 'npx kvfold --help');
if (!help.stdout.includes('Usage: kvfold') || !help.stdout.includes('demo')) fail('npx kvfold --help printed no usage', help.stdout);
const demo = run('npx', ['kvfold', 'demo', '--preset', 'smoke', '--out', 'runs'], project, 'npx kvfold demo --preset smoke');
for (const want of ['| policy | budget |', '- passkey: ', 'report: ', 'plots:  ']) if (!demo.stdout.includes(want)) fail(`kvfold demo --preset smoke printed no "${want}"`, demo.stdout);
if (!demo.stderr.startsWith('kvfold demo runs')) fail('kvfold demo did not say what it runs before it started', demo.stderr);
if (`${demo.stdout}${demo.stderr}`.includes(TFJS_BANNER)) fail("kvfold demo printed tfjs's Node.js banner");
const runs = readdirSync(join(project, 'runs'));
if (runs.length !== 1 || !existsSync(join(project, 'runs', runs[0], 'report.md'))) fail('kvfold demo wrote no report.md');
say('npx kvfold --help and npx kvfold demo --preset smoke work (legend, report and plots paths, no tfjs banner)');

// 6. ESM + TypeScript consumer: tsc --strict against the installed declarations, then run it. The
// compile uses `tsc --init`'s skipLibCheck; a second pass checks every declaration file too and fails on
// errors in kvfold's own (third-party ones, such as tfjs's or onnx-proto's globals from @types packages
// they do not depend on, are not ours to fix and are listed only).
run('npx', ['tsc', '-p', 'tsconfig.json'], project, 'tsc --strict on the consumer');
const libCheck = spawnSync('npx', ['tsc', '-p', 'tsconfig.json', '--noEmit', '--skipLibCheck', 'false'], { cwd: project, env: userEnv(), encoding: 'utf8' });
const errors = libCheck.stdout.split('\n').filter((l) => /error TS\d+/.test(l));
const ours = errors.filter((l) => !l.startsWith('node_modules/') || /^node_modules\/(@kvfold\/|kvfold\/)/.test(l));
if (ours.length > 0) fail("kvfold's declaration files do not compile under --strict with skipLibCheck off", ours.join('\n'));
const others = [...new Set(errors.map((l) => l.split('(')[0]))];
say(`declaration files of every kvfold package compile with skipLibCheck off${others.length ? ` (third-party declarations with errors, not ours: ${others.join(', ')})` : ''}`);
const consumer = run('node', ['dist/consumer.js'], project, 'the compiled consumer');
process.stdout.write(`${consumer.stdout.trimEnd().replace(/^/gm, '  ')}\n`);
say('the tsc --strict ESM consumer compiled and ran');

if (keep) say(`kept ${work}`);
else rmSync(work, { recursive: true, force: true });
say('done');
