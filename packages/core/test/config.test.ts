import { describe, expect, it } from 'vitest';
import { ConfigError, ErrorCode, KVFold, UnknownBackendError, UnknownPolicyError } from '@kvfold/core';
import { fixturePlugin } from './fixtures.js';

const kv = () => KVFold.create({ plugins: [fixturePlugin] });
const issuesOf = (fn: () => unknown) => {
  try { fn(); } catch (e) { expect(e).toBeInstanceOf(ConfigError); expect((e as ConfigError).code).toBe(ErrorCode.Config); return (e as ConfigError).issues; }
  throw new Error('expected a ConfigError');
};

describe('config validation', () => {
  it('fills defaults into a copy and leaves the input alone', () => {
    const input = { policy: { name: 'echo', budget: 0.5, options: {} }, backend: { name: 'fake' } };
    const out = kv().validate(input);
    expect(out.policy.options).toEqual({ eps: 0.75, mode: 'a' });
    expect(out.backend?.options).toBeUndefined();
    expect(out.seed).toBe(0);
    expect(out.groupReduction).toBe('mean');
    expect(input.policy.options).toEqual({});
  });
  it('names an unknown policy with the registered names', () => {
    const issues = issuesOf(() => kv().validate({ policy: { name: 'nope', budget: 0.5 } }));
    expect(issues).toContainEqual({ path: '/policy/name', rule: 'enum', message: 'must be one of "echo"', allowed: ['echo'] });
  });
  it('checks policy options against the policy\'s own schema, with the JSON path', () => {
    const issues = issuesOf(() => kv().validate({ policy: { name: 'echo', budget: 0.5, options: { eps: 2, mode: 'c', extra: 1 } } }));
    const paths = issues.map((i) => `${i.path} ${i.rule}`);
    expect(paths).toContain('/policy/options/eps maximum');
    expect(paths).toContain('/policy/options/mode enum');
    expect(paths).toContain('/policy/options/extra additionalProperties');
    expect(issues.find((i) => i.rule === 'maximum')?.allowed).toEqual({ maximum: 1 });
    expect(issues.find((i) => i.rule === 'additionalProperties')?.message).toBe('unknown property "extra"; allowed: eps, mode');
  });
  it('explains a malformed budget once, with the allowed forms', () => {
    const issues = issuesOf(() => kv().validate({ policy: { name: 'echo', budget: 1.5 } }));
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ path: '/policy/budget', rule: 'oneOf' });
    expect(issues[0]!.message).toMatch(/ratio of the prompt in \(0, 1\]/);
  });
  it('reports a missing policy and a bad backend option', () => {
    const issues = issuesOf(() => kv().validate({ backend: { name: 'fake', options: { flavour: 'z' } } }));
    expect(issues.map((i) => i.path)).toEqual(expect.arrayContaining(['/policy', '/backend/options/flavour']));
  });
  it('renders every issue in the message', () => {
    try { kv().validate({ policy: { name: 'echo', budget: 0.5, options: { eps: -3 } } }); } catch (e) {
      expect((e as Error).message).toBe('config is invalid:\n  /policy/options/eps: must be >= -1 (minimum)');
      return;
    }
    throw new Error('unreachable');
  });
  it('exports a composed schema listing registered names', () => {
    const schema = kv().schema() as { properties: { policy: { properties: { name: { enum: string[] } } }; backend: { properties: { name: { enum: string[] } } } } };
    expect(schema.properties.policy.properties.name.enum).toEqual(['echo']);
    expect(schema.properties.backend.properties.name.enum).toEqual(['fake']);
  });
});

describe('KVFold instances', () => {
  it('validates with nothing registered and reports the unknown name from the registry', async () => {
    const empty = KVFold.create();
    const c = empty.validate({ policy: { name: 'h2o', budget: 0.5 } });
    expect(c.policy.name).toBe('h2o');
    await expect(empty.configure({ policy: { name: 'h2o', budget: 0.5 } })).rejects.toThrow('unknown backend "reference"; registered backends: (none)');
  });
  it('creates policies with validated options and guards them', () => {
    const p = kv().policy('echo', { mode: 'b' });
    expect(p.name).toBe('echo');
    expect(() => kv().policy('echo', { eps: 5 })).toThrow(/options of policy "echo" is invalid/);
    const e = (() => { try { kv().policy('missing'); } catch (x) { return x; } })() as UnknownPolicyError;
    expect(e.code).toBe(ErrorCode.UnknownPolicy);
    expect(e.message).toBe('unknown policy "missing"; registered policies: "echo"');
  });
  it('creates backends and refuses unknown ones', async () => {
    const k = await kv().backend('fake', { flavour: 'y' });
    expect(k.describe()).toBe('fake y');
    await expect(kv().backend('gpu')).rejects.toBeInstanceOf(UnknownBackendError);
    await expect(kv().backend('gpu')).rejects.toThrow('unknown backend "gpu"; registered backends: "fake"');
  });
  it('shares nothing between instances', () => {
    const a = kv();
    const b = KVFold.create();
    expect(a.policies.names()).toEqual(['echo']);
    expect(b.policies.names()).toEqual([]);
    expect(a.container).not.toBe(b.container);
  });
  it('configures backend and policy from one document', async () => {
    const c = await kv().configure({ backend: { name: 'fake' }, policy: { name: 'echo', budget: { tokens: 4 } } });
    expect(c.kernels.describe()).toBe('fake x');
    expect(c.policy.name).toBe('echo');
    expect(c.config.policy.budget).toEqual({ tokens: 4 });
  });
});
