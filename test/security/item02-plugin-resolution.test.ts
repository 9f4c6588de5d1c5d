// Issue 10, item 2: plugins are resolved as package names only, from the user's project, never run
// before they are known to be plugins, and never import a file outside their package folder.
// `kvfold validate` imports nothing unless --load-plugins is given.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCode, KVFold, PLUGIN_API_VERSION } from '@kvfold/core';
import { main } from 'kvfold';
import { caught, marker, ran, temp } from './helpers.js';

/** A plugin module's source that also sets `mark` when imported. */
const pluginSource = (name: string, mark: string) =>
  `${marker(mark)}export default { name: ${JSON.stringify(name)}, pluginApiVersion: ${PLUGIN_API_VERSION}, policies: [], backends: [] };\n`;

/** Write node_modules/<name> under `root` with a package.json (`manifest` merged in) and an index.js. */
function pkg(root: string, name: string, body: string, manifest: Record<string, unknown>): string {
  const dir = join(root, 'node_modules', name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, type: 'module', main: 'index.js', ...manifest }));
  writeFileSync(join(dir, 'index.js'), body);
  return dir;
}

const plugin = { kvfold: { pluginApiVersion: PLUGIN_API_VERSION } };

describe('item 2: plugin resolution', () => {
  it('a package without the kvfold marker is refused before any of its code runs', async () => {
    const project = temp();
    pkg(project, 'not-a-plugin', pluginSource('x', '__kvf_sec_unmarked'), {});
    const e = await caught(() => KVFold.create().loadPlugins(['not-a-plugin'], { from: project }));
    expect(e.code).toBe(ErrorCode.InvalidPlugin);
    expect(e.message).toMatch(/lacks "kvfold": \{ "pluginApiVersion": 2 \}/);
    expect(ran('__kvf_sec_unmarked')).toBe(false);
  });

  it('a package marked for an older plugin API is refused before any of its code runs, saying what changed', async () => {
    const project = temp();
    pkg(project, 'old-plugin', pluginSource('old', '__kvf_sec_old_api'), { kvfold: { pluginApiVersion: PLUGIN_API_VERSION - 1 } });
    const e = await caught(() => KVFold.create().loadPlugins(['old-plugin'], { from: project }));
    expect(e.code).toBe(ErrorCode.IncompatiblePlugin);
    expect(e.message).toMatch(new RegExp(`plugin API ${PLUGIN_API_VERSION - 1} \\(its package.json "kvfold.pluginApiVersion"\\), but this kvfold supports plugin API ${PLUGIN_API_VERSION}; what changed: \\(${PLUGIN_API_VERSION}\\) `));
    expect(e.details?.changes).toMatch(/KernelBackend/);
    expect(ran('__kvf_sec_old_api')).toBe(false);
  });

  it('"@x/.." and other non-package specifiers are refused without importing anything', async () => {
    const project = temp();
    // node_modules/@x/.. is node_modules itself: give it a package.json and an index.js to import.
    mkdirSync(join(project, 'node_modules', '@x'), { recursive: true });
    writeFileSync(join(project, 'node_modules', 'package.json'), JSON.stringify({ name: 'root', type: 'module', main: 'index.js', ...plugin }));
    writeFileSync(join(project, 'node_modules', 'index.js'), pluginSource('dotdot', '__kvf_sec_dotdot'));
    for (const spec of ['@x/..', '@x/.', '..', '.hidden', 'UPPER/case', 'a/b/c', '@/x']) {
      const e = await caught(() => KVFold.create().loadPlugins([spec], { from: project }));
      expect(e.code, spec).toBe(ErrorCode.UnknownPlugin);
    }
    expect(ran('__kvf_sec_dotdot')).toBe(false);
  });

  it('an entry point outside the package folder ("main": "../../outside.mjs") is refused and not imported', async () => {
    const project = temp();
    writeFileSync(join(project, 'outside.mjs'), pluginSource('outside', '__kvf_sec_outside'));
    pkg(project, 'escapes', '', { ...plugin, main: '../../outside.mjs' });
    pkg(project, 'escapes-exports', '', { ...plugin, exports: { '.': { import: '../../outside.mjs' } } });
    for (const name of ['escapes', 'escapes-exports']) {
      const e = await caught(() => KVFold.create().loadPlugins([name], { from: project }));
      expect(e.code, name).toBe(ErrorCode.InvalidPlugin);
      expect(e.message).toMatch(/outside the package folder/);
    }
    expect(ran('__kvf_sec_outside')).toBe(false);
  });

  it('a package in a parent folder\'s node_modules (above the project root) is not found', async () => {
    const parent = temp();
    pkg(parent, 'planted', pluginSource('planted', '__kvf_sec_planted'), plugin);
    const project = join(parent, 'project');
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), '{"name": "project"}');
    const e = await caught(() => KVFold.create().loadPlugins(['planted'], { from: project }));
    expect(e.code).toBe(ErrorCode.UnknownPlugin);
    expect(e.message).toMatch(/package not found in .*project\/node_modules/);
    expect(ran('__kvf_sec_planted')).toBe(false);
  });

  it('kvfold validate imports the plugins a config lists only with --load-plugins', async () => {
    const project = temp();
    writeFileSync(join(project, 'package.json'), '{"name": "project"}');
    pkg(project, 'kvfold-plugin-sec', pluginSource('kvfold-plugin-sec', '__kvf_sec_validate'), plugin);
    writeFileSync(join(project, 'c.json'), JSON.stringify({ plugins: ['kvfold-plugin-sec'], policy: { name: 'h2o', budget: 0.5 } }));
    const out: string[] = [];
    const io = { cwd: project, stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => out.push(s) } };
    expect(await main(['validate', 'c.json'], io)).toBe(0);
    expect(out.join('')).toContain('not imported (pass --load-plugins');
    expect(ran('__kvf_sec_validate')).toBe(false);
    expect(await main(['validate', '--load-plugins', 'c.json'], io)).toBe(0);
    expect(ran('__kvf_sec_validate')).toBe(true);
  });
});
