// Many concurrent streaming clients, a random part of which disconnect mid-stream: every other
// stream must arrive whole (role chunk, text, finish_reason, usage, [DONE]), and afterwards the
// server must hold nothing (no running request, no live HTTP request, only cache pages in use).
// Env: BASE_URL, NPM_DIR, CLIENTS (256), MAX_TOKENS (16), MODEL (default).
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(process.env.NPM_DIR + '/');
const sdk = require('openai');
const OpenAI = sdk.OpenAI ?? sdk.default ?? sdk;
const BASE = process.env.BASE_URL;
const client = new OpenAI({ baseURL: BASE + '/v1', apiKey: 'none', maxRetries: 0, timeout: 120000 });
const N = Number(process.env.CLIENTS ?? 256);
const MAX = Number(process.env.MAX_TOKENS ?? 16);

let seed = 12345;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);

async function one(i) {
  const quitAfter = rand() < 0.3 ? 1 + Math.floor(rand() * 4) : -1;  // ~30% leave after 1-4 chunks
  const max = 1 + Math.floor(rand() * MAX);
  const stream = await client.chat.completions.create({
    model: process.env.MODEL ?? 'default', messages: [{ role: 'user', content: `client ${i}: tell me something` }],
    max_tokens: max, ignore_eos: true, stream: true, stream_options: { include_usage: true },
  });
  let chunks = 0, role = false, finish = null, usage = null;
  for await (const c of stream) {
    if (++chunks === quitAfter) return 'left';  // leaving the loop closes the connection
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      if (ch.delta.role === 'assistant') role = true;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.ok(role, `client ${i}: no role chunk`);
  assert.equal(finish, 'length', `client ${i}`);
  assert.equal(usage?.completion_tokens, max, `client ${i}: usage ${JSON.stringify(usage)}`);
  return 'done';
}

const results = await Promise.all(Array.from({ length: N }, (_, i) => one(i)));
const done = results.filter((r) => r === 'done').length;
assert.ok(done > N / 2, `only ${done} of ${N} completed`);

// Nothing left behind.
let st;
for (let i = 0; i < 200; i++) {
  st = (await (await fetch(BASE + '/get_server_info')).json()).internal_states[0];
  if (st.num_running_reqs === 0 && st.num_queue_reqs === 0 && st.live_http_requests === 0) break;
  await new Promise((r) => setTimeout(r, 50));
}
assert.equal(st.num_running_reqs, 0, JSON.stringify(st));
assert.equal(st.num_queue_reqs, 0, JSON.stringify(st));
assert.equal(st.live_http_requests, 0, JSON.stringify(st));
assert.equal(st.used_pages, st.cached_pages, JSON.stringify(st));
console.log(`ok: ${N} clients, ${done} completed, ${N - done} left early`);
