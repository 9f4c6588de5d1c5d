import { KVFold } from '@kvfold/core';
import baselines from '@kvfold/policy-baselines';
import h2o from '@kvfold/policy-h2o';

const kv = KVFold.create({ plugins: [baselines, h2o] });
console.log(`policies: ${kv.policies.names().join(', ')}`);

// Options are checked against each policy's JSON Schema; a bad one is a typed error naming the field.
const policy = kv.policy('h2o', { recent: 0.25, normalize: true });
console.log(`${policy.name} ready`);
try {
  kv.policy('window', { sink: -1 });
} catch (error) {
  console.log(`${error.code}: ${error.message}`);
}
