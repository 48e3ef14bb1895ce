// The official OpenAI Node SDK against `dsserve serve` (started by test_openai_sdk.sh with
// --api-key, --reasoning-parser deepseek-v3, --tool-call-parser deepseekv32 on the e2e model).
// Env: BASE_URL, API_KEY, MODEL_NAME, NPM_DIR.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

const require = createRequire(process.env.NPM_DIR + '/');
const sdk = require('openai');
const OpenAI = sdk.OpenAI ?? sdk.default ?? sdk;

const BASE = process.env.BASE_URL;
const MODEL = process.env.MODEL_NAME;
const client = new OpenAI({ baseURL: BASE + '/v1', apiKey: process.env.API_KEY, maxRetries: 0, timeout: 60000 });
const user = (content) => [{ role: 'user', content }];

async function serverState() {
  const r = await fetch(BASE + '/get_server_info', { headers: { Authorization: 'Bearer ' + process.env.API_KEY } });
  return (await r.json()).internal_states[0];
}

async function collect(stream) {
  const out = { role: null, content: '', reasoning: '', finish: null, usage: null, chunks: 0, toolCalls: {} };
  for await (const chunk of stream) {
    out.chunks++;
    if (chunk.usage) out.usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta.role) out.role = c.delta.role;
      if (c.delta.content) out.content += c.delta.content;
      if (c.delta.reasoning_content) out.reasoning += c.delta.reasoning_content;
      if (c.finish_reason) out.finish = c.finish_reason;
    }
  }
  return out;
}

test('models.list names the served model', async () => {
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), [MODEL]);
  assert.equal(models.data[0].object, 'model');
});

test('chat: a whole response with usage', async () => {
  const r = await client.chat.completions.create({ model: MODEL, messages: user('Hello!'), max_tokens: 8, temperature: 0 });
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, MODEL);
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(r.choices[0].message.content.length > 0);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 8);
  assert.ok(r.usage.prompt_tokens > 3);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 8);
  assert.equal(typeof r.usage.prompt_tokens_details.cached_tokens, 'number');
});

test('chat: a stream equals the whole response (greedy), with usage last', async () => {
  const args = { model: MODEL, messages: user('Stream this, please.'), max_tokens: 12, temperature: 0 };
  const whole = await client.chat.completions.create(args);
  const s = await collect(await client.chat.completions.create({ ...args, stream: true, stream_options: { include_usage: true } }));
  assert.equal(s.role, 'assistant');
  assert.equal(s.content, whole.choices[0].message.content);
  assert.equal(s.finish, 'length');
  assert.equal(s.usage.completion_tokens, 12);
  assert.equal(s.usage.prompt_tokens, whole.usage.prompt_tokens);
  assert.ok(s.chunks >= 4);
});

test('chat: a stop string ends the text before it', async () => {
  const args = { model: MODEL, messages: user('Say something.'), max_tokens: 24, temperature: 0 };
  const full = (await client.chat.completions.create(args)).choices[0].message.content;
  // A stop string from the middle of the greedy text: the output must end right before its first occurrence.
  const mid = Math.floor(full.length / 2);
  const stop = full.slice(mid, mid + 3);
  assert.ok(stop.trim().length > 0, `no usable stop string in ${JSON.stringify(full)}`);
  const r = await client.chat.completions.create({ ...args, stop: [stop] });
  assert.equal(r.choices[0].message.content, full.slice(0, full.indexOf(stop)));
  assert.equal(r.choices[0].finish_reason, 'stop');
});

test('chat: the same seed gives the same text, another seed another', async () => {
  const args = { model: MODEL, messages: user('Random words:'), max_tokens: 16, temperature: 1.0 };
  const a = await client.chat.completions.create({ ...args, seed: 1234 });
  const b = await client.chat.completions.create({ ...args, seed: 1234 });
  const c = await client.chat.completions.create({ ...args, seed: 4321 });
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
  assert.notEqual(a.choices[0].message.content, c.choices[0].message.content);
});

test('chat: n = 3 choices', async () => {
  const r = await client.chat.completions.create({ model: MODEL, messages: user('Three of them'), max_tokens: 6, n: 3, seed: 7 });
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
  assert.equal(r.usage.completion_tokens, 18);
  assert.equal(new Set(r.choices.map((c) => c.message.content)).size, 3);
});

test('chat: logprobs with top_logprobs', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, messages: user('Logprobs?'), max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 3,
  });
  const lp = r.choices[0].logprobs.content;
  assert.equal(lp.length, 5);
  // The tokens' bytes spell the text (a token may hold part of a UTF-8 character).
  assert.equal(Buffer.from(lp.flatMap((t) => t.bytes)).toString('utf8'), r.choices[0].message.content);
  for (const t of lp) {
    assert.ok(t.logprob <= 0);
    assert.equal(t.top_logprobs.length, 3);
    assert.ok(Array.isArray(t.bytes));
    // Greedy: the chosen token is the most likely one.
    assert.ok(Math.abs(t.logprob - t.top_logprobs[0].logprob) < 1e-5, JSON.stringify(t));
  }
});

test('chat: reasoning on and off', async () => {
  const on = await client.chat.completions.create({
    model: MODEL, messages: user('Think first.'), max_tokens: 10, temperature: 0,
    chat_template_kwargs: { thinking: true },
  });
  // Random weights never close </think>: everything is (truncated) reasoning.
  assert.ok(on.choices[0].message.reasoning_content.length > 0);
  assert.ok(!on.choices[0].message.content);
  assert.equal(on.usage.completion_tokens_details.reasoning_tokens, 10);
  const off = await client.chat.completions.create({
    model: MODEL, messages: user('Think first.'), max_tokens: 10, temperature: 0,
    chat_template_kwargs: { thinking: false },
  });
  assert.ok(off.choices[0].message.content.length > 0);
  assert.equal(off.choices[0].message.reasoning_content, null);
  assert.equal(off.usage.completion_tokens_details.reasoning_tokens, 0);
  const s = await collect(await client.chat.completions.create({
    model: MODEL, messages: user('Think first.'), max_tokens: 10, temperature: 0,
    chat_template_kwargs: { thinking: true }, stream: true,
  }));
  assert.equal(s.reasoning, on.choices[0].message.reasoning_content);
});

const tools = [{
  type: 'function',
  function: { name: 'get_weather', description: 'Current weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } },
}];

test('chat: tools are accepted and tool results go back in', async () => {
  const r = await client.chat.completions.create({ model: MODEL, messages: user('Weather in Paris?'), tools, max_tokens: 4 });
  assert.ok(['length', 'stop', 'tool_calls'].includes(r.choices[0].finish_reason));
  const noTools = await client.chat.completions.create({ model: MODEL, messages: user('Weather in Paris?'), max_tokens: 4 });
  assert.ok(r.usage.prompt_tokens > noTools.usage.prompt_tokens);  // the tool schema is in the prompt
  const followUp = await client.chat.completions.create({
    model: MODEL, tools, max_tokens: 4,
    messages: [
      ...user('Weather in Paris?'),
      { role: 'assistant', content: '', tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: 'sunny and 21 degrees' },
    ],
  });
  assert.ok(followUp.usage.prompt_tokens > r.usage.prompt_tokens);
  // required / a named function are enforced: the (random-weight) model must open a call to the tool.
  // Its arguments are its own, so the call may not parse: then the opened block comes back as content.
  const opened = (m) => (m.tool_calls?.[0]?.function?.name === 'get_weather') || (m.content ?? '').includes('invoke name="get_weather"');
  for (const choice of ['none', 'required', { type: 'function', function: { name: 'get_weather' } }]) {
    const x = await client.chat.completions.create({ model: MODEL, messages: user('Weather?'), tools, tool_choice: choice, max_tokens: 40, temperature: 0 });
    assert.equal(x.choices.length, 1);
    assert.equal(opened(x.choices[0].message), choice !== 'none', JSON.stringify(x.choices[0].message));
  }
});

test('completions: whole, stream and logprobs', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: 'The capital of France is', max_tokens: 6, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 6);
  let text = '';
  let usage = null;
  const stream = await client.completions.create({
    model: MODEL, prompt: 'The capital of France is', max_tokens: 6, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) text += c.text;
  }
  assert.equal(text, r.choices[0].text);
  assert.equal(usage.completion_tokens, 6);
  const lp = await client.completions.create({ model: MODEL, prompt: [0, 1000, 2000], max_tokens: 3, logprobs: 2, temperature: 0 });
  assert.equal(lp.choices[0].logprobs.tokens.length, 3);
  assert.equal(lp.choices[0].logprobs.top_logprobs[0] && Object.keys(lp.choices[0].logprobs.top_logprobs[0]).length >= 1, true);
  assert.equal(lp.usage.prompt_tokens, 3);
});

test('errors come back as the SDK error classes', async () => {
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: user('x'), temperature: -1 }), (e) => {
    assert.equal(e.status, 400);
    assert.ok(e instanceof OpenAI.BadRequestError);
    assert.equal(e.param, 'temperature');
    return true;
  });
  await assert.rejects(client.chat.completions.create({ model: 'no-such-model', messages: user('x') }), (e) => {
    assert.equal(e.status, 404);
    assert.ok(e instanceof OpenAI.NotFoundError);
    assert.equal(e.code, 'model_not_found');
    return true;
  });
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: [] }), (e) => e.status === 400);
  const bad = new OpenAI({ baseURL: BASE + '/v1', apiKey: 'sk-wrong', maxRetries: 0 });
  await assert.rejects(bad.models.list(), (e) => {
    assert.equal(e.status, 401);
    assert.ok(e instanceof OpenAI.AuthenticationError);
    return true;
  });
});

test('a stream the client aborts stops the request and frees its pages', async () => {
  const controller = new AbortController();
  const stream = await client.chat.completions.create(
    { model: MODEL, messages: user('A very long story'), max_tokens: 3000, ignore_eos: true, stream: true },
    { signal: controller.signal },
  );
  let chunks = 0;
  try {
    for await (const _ of stream) {
      if (++chunks === 3) controller.abort();  // the SDK may end the iteration quietly or throw
    }
  } catch (e) {
    assert.ok(e instanceof OpenAI.APIUserAbortError || e.name === 'AbortError', String(e));
  }
  assert.ok(chunks >= 3 && chunks < 100, `${chunks} chunks`);
  let st = await serverState();
  for (let i = 0; i < 100 && st.num_running_reqs > 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    st = await serverState();
  }
  assert.equal(st.num_running_reqs, 0);
  assert.equal(st.used_pages, st.cached_pages);  // only the prefix cache holds pages now
});
