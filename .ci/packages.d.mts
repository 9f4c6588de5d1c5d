/** A workspace package. */
export interface WorkspacePackage {
  /** Its folder, relative to the repository root. */
  readonly dir: string;
  /** Its package.json. */
  readonly manifest: Record<string, unknown> & { readonly name: string; readonly private?: boolean };
}
/** Every workspace package. */
export function workspacePackages(root: string): WorkspacePackage[];
/** The public packages (no "private": true). */
export function publicPackages(root: string): WorkspacePackage[];
