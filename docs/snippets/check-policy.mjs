import { KVFold } from '@kvfold/core';
import h2o from '@kvfold/policy-h2o';
import { checkPolicy } from '@kvfold/testkit';

// The invariant matrix every kvfold policy must pass: shapes, budgets, positions, no leaks, determinism.
const kv = KVFold.create({ plugins: [h2o] });
const failures = await checkPolicy(() => kv.policy('h2o'), { prefillLength: 'budget' });
console.log(failures.length === 0 ? 'h2o passes the policy invariant matrix' : failures.join('\n'));
