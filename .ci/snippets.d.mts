/** A runnable snippet shown in a Markdown file. */
export interface Snippet {
  /** The Markdown file, relative to the repository root. */
  readonly doc: string;
  /** The snippet's file, relative to the repository root. */
  readonly file: string;
  /** The code the Markdown shows. */
  readonly shown: string;
  /** The output the Markdown shows, if it shows one. */
  readonly prints: string | undefined;
}
/** Markdown files that may hold snippets. */
export function documents(root: string): string[];
/** Every marked snippet. */
export function findSnippets(root: string): Snippet[];
