// The workspace's packages, read from pnpm-workspace.yaml's globs (`dir/*` entries), and which of them are
// public: every package without "private": true is meant for users and is packed, checked and installed
// by .ci/pack.mjs; test/packages.test.ts checks each one carries what a published package needs.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** Every workspace package: its folder (relative to the root) and its package.json. */
export function workspacePackages(root) {
  const yaml = readFileSync(join(root, 'pnpm-workspace.yaml'), 'utf8');
  const block = /^packages:\n((?:\s+- .+\n)+)/m.exec(yaml);
  if (!block) throw new Error('pnpm-workspace.yaml has no packages list');
  const globs = [...block[1].matchAll(/- ['"]?([^'"\n]+?)['"]?\s*$/gm)].map((m) => m[1]);
  const out = [];
  for (const glob of globs) {
    if (!glob.endsWith('/*')) throw new Error(`unsupported workspace glob ${glob}; use dir/*`);
    const base = glob.slice(0, -2);
    for (const entry of readdirSync(join(root, base)).sort()) {
      const file = join(root, base, entry, 'package.json');
      if (existsSync(file)) out.push({ dir: `${base}/${entry}`, manifest: JSON.parse(readFileSync(file, 'utf8')) });
    }
  }
  return out;
}

/** The public packages (no "private": true). */
export function publicPackages(root) {
  return workspacePackages(root).filter((p) => p.manifest.private !== true);
}
