import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCode, KVFold, PLUGIN_API_VERSION, SPECIFICATION_VERSION, assertPlugin, coreVersion, definePlugin, type KVFoldError } from '@kvfold/core';
import { echoPolicy, fixturePlugin } from './fixtures.js';

const codeOf = async (fn: () => unknown): Promise<[string, string]> => {
  try { await fn(); } catch (e) { return [(e as KVFoldError).code, (e as Error).message]; }
  throw new Error('expected an error');
};

/** Write a fake npm plugin package under dir/node_modules/name whose default export is `body`. */
function fakePackage(dir: string, name: string, body: string, manifest: Record<string, unknown> = {}): void {
  const pkg = join(dir, 'node_modules', name);
  mkdirSync(pkg, { recursive: true });
  writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name, type: 'module', exports: { '.': { import: './index.js' } }, kvfold: { pluginApiVersion: PLUGIN_API_VERSION }, ...manifest }));
  writeFileSync(join(pkg, 'index.js'), body);
}

describe('plugin contract', () => {
  it('accepts definePlugin output', () => {
    expect(assertPlugin(fixturePlugin, 'fixture').policies).toHaveLength(1);
  });
  it.each([
    [null, /default export is null/],
    [{ name: 'x' }, /no "pluginApiVersion"/],
    [{ name: 'x', pluginApiVersion: PLUGIN_API_VERSION, policies: 'no', backends: [] }, /must be arrays/],
    [{ name: 'x', pluginApiVersion: PLUGIN_API_VERSION, policies: [{ name: 'p' }], backends: [] }, /needs a name, a schema and a create function/],
  ])('rejects %j as KVF_INVALID_PLUGIN', async (value, msg) => {
    const [code, message] = await codeOf(() => assertPlugin(value, 'pkg'));
    expect(code).toBe(ErrorCode.InvalidPlugin);
    expect(message).toMatch(/^plugin "pkg" is not a kvfold plugin/);
    expect(message).toMatch(msg);
  });
  it('refuses another plugin API major or policy specification version', async () => {
    const [code, message] = await codeOf(() => assertPlugin({ ...definePlugin({ name: 'old' }), pluginApiVersion: 99 }, 'old-pkg'));
    expect(code).toBe(ErrorCode.IncompatiblePlugin);
    expect(message).toBe(`plugin "old-pkg" was built for plugin API 99, but this kvfold supports plugin API ${PLUGIN_API_VERSION}`);
    const v1 = { ...echoPolicy, specificationVersion: 'v1' } as unknown as typeof echoPolicy;
    const [code2, message2] = await codeOf(() => assertPlugin(definePlugin({ name: 'v1', policies: [v1] }), 'v1-pkg'));
    expect(code2).toBe(ErrorCode.IncompatiblePlugin);
    expect(message2).toMatch(/policy specification v1 \(policy "echo"\), but this kvfold supports policy specification v2; what changed: KVKernels.observe returns \{ attention, lastAttention \}/);
    // A plugin built for the previous plugin API is told what changed since.
    const [code3, message3] = await codeOf(() => assertPlugin({ ...definePlugin({ name: 'one' }), pluginApiVersion: 1 }, 'one-pkg'));
    expect(code3).toBe(ErrorCode.IncompatiblePlugin);
    expect(message3).toMatch(/plugin API 1, but this kvfold supports plugin API 2; what changed: \(2\) a backend's create\(\) now returns a KernelBackend/);
  });
  it('names both owners on a name clash', async () => {
    const kv = KVFold.create({ plugins: [fixturePlugin] });
    const [code, message] = await codeOf(() => kv.use(definePlugin({ name: 'other', policies: [echoPolicy] }), '@acme/other'));
    expect(code).toBe(ErrorCode.NameClash);
    expect(message).toBe('policy "echo" from @acme/other clashes with the one already registered by fixture');
  });
});

describe('loading plugin packages', () => {
  const project = mkdtempSync(join(tmpdir(), 'kvfold-plugins-'));
  // Structural plugin: a published plugin bundles its own copy of definePlugin's output shape.
  fakePackage(project, '@acme/kvfold-good', `export default { name: '@acme/kvfold-good', pluginApiVersion: ${PLUGIN_API_VERSION}, backends: [],
  policies: [{ specificationVersion: '${SPECIFICATION_VERSION}', name: 'good', description: 'd', schema: { type: 'object' },
    create: () => ({ specificationVersion: '${SPECIFICATION_VERSION}', name: 'good', needs: [], prefill: async (l) => l, step: async (l) => l }) }] };`);
  fakePackage(project, 'not-a-plugin', 'export default { hello: 1 };');
  fakePackage(project, 'throws-on-import', 'throw new Error("boom");');
  writeFileSync(join(project, 'local-plugin.mjs'), `export default ${JSON.stringify({ name: 'local', pluginApiVersion: PLUGIN_API_VERSION, policies: [], backends: [] })};`);

  it('resolves a package from the user project and registers its policies', async () => {
    const kv = KVFold.create();
    await kv.loadPlugins(['@acme/kvfold-good'], { from: project });
    expect(kv.policies.names()).toEqual(['good']);
    expect(kv.plugins()).toEqual(['@acme/kvfold-good']);
  });
  it('gives a typed error naming the package when it is missing, invalid or throws', async () => {
    const kv = KVFold.create();
    expect(await codeOf(() => kv.loadPlugins(['@acme/missing'], { from: project }))).toEqual([ErrorCode.UnknownPlugin, expect.stringMatching(/^plugin "@acme\/missing" could not be loaded: package not found/)]);
    expect(await codeOf(() => kv.loadPlugins(['not-a-plugin'], { from: project }))).toEqual([ErrorCode.InvalidPlugin, expect.stringMatching(/^plugin "not-a-plugin" is not a kvfold plugin/)]);
    expect(await codeOf(() => kv.loadPlugins(['throws-on-import'], { from: project }))).toEqual([ErrorCode.UnknownPlugin, expect.stringMatching(/importing it failed: boom/)]);
  });
  it('loads file paths only with an explicit opt-in', async () => {
    const kv = KVFold.create();
    const [code, message] = await codeOf(() => kv.loadPlugins(['./local-plugin.mjs'], { from: project }));
    expect(code).toBe(ErrorCode.UnknownPlugin);
    expect(message).toMatch(/file paths are not loaded from configs unless allowPaths is set/);
    await kv.loadPlugins(['./local-plugin.mjs'], { from: project, allowPaths: true });
    expect(kv.plugins()).toEqual(['local']);
  });
  it('loads the plugins a config names before validating it', async () => {
    const kv = KVFold.create({ plugins: [fixturePlugin] });
    const c = await kv.configure({ plugins: ['@acme/kvfold-good'], backend: { name: 'fake' }, policy: { name: 'good', budget: 0.5 } }, { from: project });
    expect(c.config.plugins).toEqual(['@acme/kvfold-good']);
    expect(kv.policies.names()).toEqual(['echo', 'good']);
  });
});

describe('plugin packages and the kvfold version they were built for', () => {
  const project = mkdtempSync(join(tmpdir(), 'kvfold-versions-'));
  const plugin = (name: string, marker: string) =>
    `globalThis[${JSON.stringify(marker)}] = true; export default { name: ${JSON.stringify(name)}, pluginApiVersion: ${PLUGIN_API_VERSION}, policies: [], backends: [] };`;
  const [major, minor, patch] = coreVersion().split('.').map(Number) as [number, number, number];
  const v = `${major}.${minor}.${patch}`;
  const accepted = [`^${v}`, `~${v}`, `${v}`, `>=${v}`, `>=${major}.${minor}.0 <${major + 9}`, `${v} - ${major + 5}.0.0`, `${major}.${minor}.x`, 'workspace:*', `workspace:^${v}`, `${major + 7}.x || ^${v}`, '*'];
  const refused = [`^${major + 1}.0.0`, `>${v}`, `<${v}`, `${major + 1}.x`, `~${major}.${minor + 1}.0`, `^${major}.${minor + 1}.0`];

  it.each(accepted)('loads a plugin whose peer @kvfold/core range is %s', async (range) => {
    const name = `ok-${accepted.indexOf(range)}`;
    fakePackage(project, name, plugin(name, `__kvfold_${name}`), { peerDependencies: { '@kvfold/core': range } });
    const kv = KVFold.create();
    await kv.loadPlugins([name], { from: project });
    expect(kv.plugins()).toEqual([name]);
  });
  it.each(refused)('refuses a plugin built for @kvfold/core %s before running its code', async (range) => {
    const name = `old-${refused.indexOf(range)}`;
    const marker = `__kvfold_${name}`;
    fakePackage(project, name, plugin(name, marker), { peerDependencies: { '@kvfold/core': range } });
    const [code, message] = await codeOf(() => KVFold.create().loadPlugins([name], { from: project }));
    expect(code).toBe(ErrorCode.IncompatiblePlugin);
    expect(message).toBe(`plugin "${name}" was built for @kvfold/core ${range}, but this kvfold supports @kvfold/core ${coreVersion()}`);
    expect((globalThis as Record<string, unknown>)[marker]).toBeUndefined();
  });
  it('reads dependencies when there is no peer dependency, and rejects a range that is not one', async () => {
    fakePackage(project, 'dep-old', plugin('dep-old', '__kvfold_dep_old'), { dependencies: { '@kvfold/core': `^${major + 3}.0.0` } });
    expect((await codeOf(() => KVFold.create().loadPlugins(['dep-old'], { from: project })))[0]).toBe(ErrorCode.IncompatiblePlugin);
    fakePackage(project, 'bad-range', plugin('bad-range', '__kvfold_bad_range'), { peerDependencies: { '@kvfold/core': 'latest-please' } });
    const [code, message] = await codeOf(() => KVFold.create().loadPlugins(['bad-range'], { from: project }));
    expect(code).toBe(ErrorCode.InvalidPlugin);
    expect(message).toMatch(/^plugin "bad-range" is not a kvfold plugin: its package.json declares @kvfold\/core "latest-please", which is not an npm version range/);
  });
  it('gives a typed error naming the package for a broken package.json', async () => {
    const dir = join(project, 'node_modules', 'broken-manifest');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'package.json'), '{ "name": ');
    const [code, message] = await codeOf(() => KVFold.create().loadPlugins(['broken-manifest'], { from: project }));
    expect(code).toBe(ErrorCode.InvalidPlugin);
    expect(message).toMatch(/^plugin "broken-manifest" is not a kvfold plugin: its package.json .* is not valid JSON/);
  });
  it('refuses a second plugin under a name already taken, and ignores loading the same package twice', async () => {
    fakePackage(project, 'first-dup', plugin('dup', '__kvfold_first_dup'));
    fakePackage(project, 'second-dup', plugin('dup', '__kvfold_second_dup'));
    const kv = KVFold.create();
    await kv.loadPlugins(['first-dup', 'first-dup'], { from: project });
    expect(kv.plugins()).toEqual(['dup']);
    const [code, message] = await codeOf(() => kv.loadPlugins(['second-dup'], { from: project }));
    expect(code).toBe(ErrorCode.NameClash);
    expect(message).toBe('plugin "dup" from second-dup clashes with the one already registered by first-dup');
  });
});
