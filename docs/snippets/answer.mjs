import { PASSKEY_QUESTION, passkeySample } from '@kvfold/model-tiny';
import { answer, releaseModels } from '@kvfold/pipeline';

// 1024 characters of filler with a pass key in the middle, in the format the embedded model was trained on.
const sample = passkeySample({ length: 1024, depth: 0.5, seed: 1 });
const context = sample.prompt.slice(0, -PASSKEY_QUESTION.length);

const result = await answer({ context, question: PASSKEY_QUESTION, policy: 'kvmerger', budget: 0.35 });
console.log(`key ${sample.answer}, answer ${result.answer}`);
console.log(`slots per layer: ${result.keptSlots.join(', ')} (budget ${result.budgetSlots} of ${result.contextTokens} context tokens)`);
await releaseModels();
