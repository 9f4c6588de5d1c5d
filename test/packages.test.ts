// Every public workspace package (no "private": true) must be publishable as it stands: what npm and a
// user's TypeScript need, the license, a README with code, and no dependency that cannot be installed.
// New packages are held to this automatically; .ci/pack.mjs then packs and installs them for real.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { publicPackages, workspacePackages } from '../.ci/packages.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const all = workspacePackages(root);
const pub = publicPackages(root);
const privateNames = new Set(all.filter((p) => p.manifest.private === true).map((p) => p.manifest.name));
const publicNames = new Set(pub.map((p) => p.manifest.name));
const rootManifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { license?: string };
const license = readFileSync(join(root, 'LICENSE'), 'utf8');

interface Manifest {
  name: string;
  version: string;
  license?: string;
  type?: string;
  main?: string;
  types?: string;
  engines?: Record<string, string>;
  repository?: { type?: string; url?: string; directory?: string };
  exports?: Record<string, unknown>;
  files?: string[];
  bin?: Record<string, string>;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  devDependencies?: Record<string, string>;
}

/** Whether any source file of the package imports @kvfold/core. */
function importsCore(dir: string): boolean {
  const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : e.name.endsWith('.ts') ? [join(d, e.name)] : []));
  return walk(join(dir, 'src')).some((f) => /from '@kvfold\/core'/.test(readFileSync(f, 'utf8')));
}

/** Packages a user installs next to core as plugins: they must share the user's core (peer dependency). */
const isPlugin = (name: string) => /^@kvfold\/(policy-|backend-)/.test(name) || name === '@kvfold/testkit';

describe('the workspace', () => {
  it('has the Apache-2.0 license text at the root and says so', () => {
    expect(license.startsWith('                                 Apache License\n                           Version 2.0, January 2004')).toBe(true);
    expect(license).toContain('END OF TERMS AND CONDITIONS');
    expect(rootManifest.license).toBe('Apache-2.0');
  });

  it("keeps onnxruntime-node's download off in the repository without an .npmrc key npm warns about", () => {
    // npm (and so every `npx -y pnpm ...`) warned "Unknown project config onnxruntime-node-install";
    // pnpm's allowBuilds is what keeps the install script from running.
    expect(existsSync(join(root, '.npmrc'))).toBe(false);
    expect(readFileSync(join(root, 'pnpm-workspace.yaml'), 'utf8')).toMatch(/^allowBuilds:\n(?:\s+#.*\n|\s+\S+: (?:true|false)\n)*\s+onnxruntime-node: false$/m);
  });

  it('keeps every example private and publishes the rest', () => {
    for (const p of all) expect(p.manifest.private === true, `${p.dir}: examples stay private, packages are public`).toBe(p.dir.startsWith('examples/'));
    expect(pub.length).toBeGreaterThanOrEqual(14);
  });
});

describe.each(pub.map((p) => [p.manifest.name, p] as const))('public package %s', (_, p) => {
  const m = p.manifest as unknown as Manifest;
  const dir = join(root, p.dir);

  it('is licensed Apache-2.0 and ships the license text', () => {
    expect(m.license).toBe('Apache-2.0');
    expect(existsSync(join(dir, 'LICENSE')), `${p.dir}/LICENSE is missing`).toBe(true);
    expect(readFileSync(join(dir, 'LICENSE'), 'utf8')).toBe(license);
  });

  it('has a README with a code block', () => {
    const readme = join(dir, 'README.md');
    expect(existsSync(readme), `${p.dir}/README.md is missing`).toBe(true);
    expect(readFileSync(readme, 'utf8')).toMatch(/```(js|ts|sh)\n/);
  });

  it('names its repository folder, Node >= 20, ESM, and an exports map with types', () => {
    expect(m.name === 'kvfold' || m.name.startsWith('@kvfold/')).toBe(true);
    expect(m.repository).toEqual({ type: 'git', url: 'git+https://github.com/kvfold/kvfold.git', directory: p.dir });
    expect(m.engines).toEqual({ node: '>=20' });
    expect(m.type).toBe('module');
    expect(m.types).toBe('./dist/index.d.ts');
    expect(m.main).toBe('./dist/index.js');
    expect(m.exports?.['.']).toEqual({ types: './dist/index.d.ts', import: './dist/index.js' });
    expect(existsSync(join(dir, 'src/index.ts'))).toBe(true);
  });

  it('packs dist without the build-info file, and its README and LICENSE', () => {
    expect(m.files).toEqual(expect.arrayContaining(['dist', '!dist/.tsbuildinfo', 'LICENSE', 'README.md']));
    for (const bin of Object.values(m.bin ?? {})) expect(bin.startsWith('./dist/')).toBe(true);
  });

  it('depends on no private package, and on workspace packages through caret ranges', () => {
    for (const field of ['dependencies', 'peerDependencies'] as const) {
      for (const [dep, range] of Object.entries(m[field] ?? {})) {
        expect(privateNames.has(dep), `${m.name} ${field} names the private package ${dep}`).toBe(false);
        if (publicNames.has(dep)) expect(range, `${m.name} ${field}.${dep}`).toBe('workspace:^');
      }
    }
  });

  it('takes @kvfold/core as a peer dependency when it is a plugin, as docs/writing-a-policy-plugin.md tells third parties', () => {
    if (m.name === '@kvfold/core') return;
    if (isPlugin(m.name)) {
      expect(m.peerDependencies?.['@kvfold/core']).toBe('workspace:^');
      expect(m.dependencies?.['@kvfold/core']).toBeUndefined();
    } else if (importsCore(dir)) {
      expect(m.dependencies?.['@kvfold/core'] ?? m.peerDependencies?.['@kvfold/core']).toBe('workspace:^');
    } else {
      // A leaf utility that never imports core (the ONNX graph builder) carries no core to share.
      expect(m.dependencies?.['@kvfold/core'] ?? m.peerDependencies?.['@kvfold/core']).toBeUndefined();
    }
  });

  it('never makes users install onnxruntime-node (its install downloads CUDA files): an optional peer at most', () => {
    expect(m.dependencies?.['onnxruntime-node']).toBeUndefined();
    if (m.peerDependencies?.['onnxruntime-node'] !== undefined) expect(m.peerDependenciesMeta?.['onnxruntime-node']?.optional).toBe(true);
  });
});
