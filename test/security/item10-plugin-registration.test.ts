// Issue 10, item 10: registering a plugin is all-or-nothing, its schemas are compiled when it is added,
// and every failure of its code (getters, create()) is a typed error.
import { describe, expect, it } from 'vitest';
import { ErrorCode, KVFold, PLUGIN_API_VERSION, SPECIFICATION_VERSION, defineKernel, definePlugin, definePolicy, type JsonSchema, type KVCachePolicy } from '@kvfold/core';
import { caught } from './helpers.js';

const policy = (name: string, schema: JsonSchema = { type: 'object' }, create: () => KVCachePolicy = () => ({ specificationVersion: SPECIFICATION_VERSION, name, needs: [], prefill: async (l) => l, step: async (l) => l })) =>
  definePolicy({ name, description: name, schema, create });

describe('item 10: plugin registration', () => {
  it('a clash on a plugin\'s second policy leaves its first one unregistered', async () => {
    const kv = KVFold.create({ plugins: [definePlugin({ name: 'a', policies: [policy('taken')] })] });
    const e = await caught(() => kv.use(definePlugin({ name: 'b', policies: [policy('fresh'), policy('taken')] })));
    expect(e.code).toBe(ErrorCode.NameClash);
    expect(kv.policies.names()).toEqual(['taken']);
    expect(kv.plugins()).toEqual(['a']);
  });

  it('kernels a plugin brings (issue 15) register all-or-nothing with its policies; its kernel objects are read once', async () => {
    const kernel = (name: string) => defineKernel({ name, description: name, validate: (_check, x: unknown) => x, reference: (x: unknown) => x });
    const kv = KVFold.create({ plugins: [definePlugin({ name: 'a', kernels: [kernel('scale')] })] });
    const e = await caught(() => kv.use(definePlugin({ name: 'b', policies: [policy('fresh')], kernels: [kernel('other'), kernel('scale')] })));
    expect(e.code).toBe(ErrorCode.NameClash);
    expect(e.message).toMatch(/kernel "scale" from b clashes with the one already registered by a/);
    expect(kv.policies.names()).toEqual([]);
    expect(kv.kernelRegistry.names()).not.toContain('other');
    const impl = { backend: 'reference', kernel: 'scale', implementation: { run: (x: unknown) => x } };
    kv.use(definePlugin({ name: 'c', kernelImplementations: [impl] }));
    const e2 = await caught(() => kv.use(definePlugin({ name: 'd', policies: [policy('late')], kernelImplementations: [impl] })));
    expect(e2.code).toBe(ErrorCode.NameClash);
    expect(kv.policies.names()).toEqual([]);
    // A throwing getter on a kernel definition is a typed error when the plugin is added, never later.
    const trap = { ...kernel('trap'), get reference(): never { throw new Error('boom'); } };
    const e3 = await caught(() => kv.use(definePlugin({ name: 'e', kernels: [trap] })));
    expect(e3.code).toBe(ErrorCode.InvalidPlugin);
    expect(e3.message).toMatch(/reading kernel #0.reference threw: boom/);
  });

  it('a second, different plugin under the same name and source is a clash, not silently ignored', async () => {
    const kv = KVFold.create();
    kv.use(definePlugin({ name: 'p', policies: [policy('one')] }), 'pkg');
    const e = await caught(() => kv.use(definePlugin({ name: 'p', policies: [policy('two')] }), 'pkg'));
    expect(e.code).toBe(ErrorCode.NameClash);
    expect(kv.policies.names()).toEqual(['one']);
    // The same plugin reached as a second module instance (equal content) is still a no-op.
    kv.use(definePlugin({ name: 'p', policies: [policy('one')] }), 'pkg');
    expect(kv.plugins()).toEqual(['p']);
  });

  it('a plugin whose options schema does not compile is refused when it is added; validate() keeps working', async () => {
    const kv = KVFold.create({ plugins: [definePlugin({ name: 'ok', policies: [policy('fine')] })] });
    const e = await caught(() => kv.use(definePlugin({ name: 'bad', policies: [policy('broken', { type: 'no-such-type' })] })));
    expect(e.code).toBe(ErrorCode.InvalidPlugin);
    expect(e.message).toMatch(/the options schema of policy "broken" does not compile/);
    expect(kv.policies.names()).toEqual(['fine']);
    expect(kv.validate({ policy: { name: 'fine', budget: 0.5 } }).policy.name).toBe('fine');
    // A schema that compiles alone but breaks the composed schema (a $ref to the root) is refused too.
    const f = await caught(() => kv.use(definePlugin({ name: 'ref', policies: [policy('r', { type: 'object', properties: { x: { $ref: '#/definitions/nope' } }, definitions: { nope: { type: 'number' } } })] })));
    expect(f.code).toBe(ErrorCode.InvalidPlugin);
    expect(kv.validate({ policy: { name: 'fine', budget: 0.5 } }).policy.name).toBe('fine');
  });

  it('a throwing getter, use(null), and a throwing create() are typed errors', async () => {
    const kv = KVFold.create();
    const getter = { name: 'g', pluginApiVersion: PLUGIN_API_VERSION, backends: [], get policies(): never { throw new Error('boom'); } };
    const e = await caught(() => kv.use(getter as never));
    expect(e.code).toBe(ErrorCode.InvalidPlugin);
    expect(e.message).toMatch(/reading "policies" threw: boom/);
    expect((await caught(() => kv.use(null as never))).code).toBe(ErrorCode.InvalidPlugin);
    expect((await caught(() => kv.use(new Proxy({}, { get() { throw new RangeError('trap'); } }) as never))).code).toBe(ErrorCode.InvalidPlugin);
    kv.use(definePlugin({ name: 'c', policies: [policy('crash', { type: 'object' }, () => { throw new TypeError('nope'); })] }));
    const c = await caught(() => kv.policy('crash'));
    expect(c.code).toBe(ErrorCode.PluginFailure);
    expect(c.message).toBe('plugin "c": policy "crash" create() threw: nope');
    kv.use(definePlugin({ name: 'd', policies: [policy('hollow', { type: 'object' }, () => ({}) as KVCachePolicy)] }));
    expect((await caught(() => kv.policy('hollow'))).code).toBe(ErrorCode.InvalidPlugin);
    expect(kv.policies.names()).toEqual(['crash', 'hollow']);
  });
});
