/**
 * @packageDocumentation
 * kvfold-policy-tova: TOVA (Oren et al., 2024) as a third-party kvfold plugin. It depends on
 * `@kvfold/core` only (a peer dependency) and is loaded like any published plugin:
 * `await kv.loadPlugins(['kvfold-policy-tova'])`, or `"plugins": ["kvfold-policy-tova"]` in a config.
 */
import { definePlugin } from '@kvfold/core';
import { tovaPolicy } from './tova.js';

export { TovaPolicy, tovaPolicy } from './tova.js';
export { tovaSchema, type TovaOptions } from './schema.js';

/** The plugin registering the `tova` policy; the package's default export, as kvfold requires. */
export default definePlugin({ name: 'kvfold-policy-tova', policies: [tovaPolicy] });
