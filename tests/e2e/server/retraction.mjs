// 32 concurrent greedy completions on a KV pool far too small for all of them: every one must
// complete in full, and the ones checked must match the same request run alone afterwards.
// Env: BASE_URL, NPM_DIR.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(process.env.NPM_DIR + '/');
const sdk = require('openai');
const OpenAI = sdk.OpenAI ?? sdk.default ?? sdk;
const client = new OpenAI({ baseURL: process.env.BASE_URL + '/v1', apiKey: 'none', maxRetries: 0, timeout: 120000 });

const N = 32, MAX = 40;
const prompt = (i) => [0, 100 + i, 2000 + 7 * i, 5000 + 13 * i, 9000 + i];
const run = (i) => client.completions.create({ model: 'default', prompt: prompt(i), max_tokens: MAX, temperature: 0, ignore_eos: true });

const all = await Promise.all(Array.from({ length: N }, (_, i) => run(i)));
for (const r of all) {
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, MAX);
}
const info = await (await fetch(process.env.BASE_URL + '/get_server_info')).json();
const st = info.internal_states[0];
assert.ok(st.retractions_total > 0, `no retraction happened: ${JSON.stringify(st)}`);
for (const i of [0, 13, 31]) {
  const alone = await run(i);
  assert.equal(all[i].choices[0].text, alone.choices[0].text, `request ${i} differs after retraction`);
}
console.log(`ok: ${N} requests, ${st.retractions_total} retractions`);
