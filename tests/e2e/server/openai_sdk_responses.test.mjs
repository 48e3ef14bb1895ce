// The official OpenAI Node SDK's Responses API (responses.create, whole and streaming) and DeepSeek's
// API dialect for thinking (`thinking: {type}`, `reasoning_effort`) against `dsserve serve` (started
// by test_openai_sdk.sh with --reasoning-parser deepseek-v3 --tool-call-parser deepseekv32).
// Env: BASE_URL, API_KEY, MODEL_NAME, NPM_DIR.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

const require = createRequire(process.env.NPM_DIR + '/');
const sdk = require('openai');
const OpenAI = sdk.OpenAI ?? sdk.default ?? sdk;

const MODEL = process.env.MODEL_NAME;
const client = new OpenAI({ baseURL: process.env.BASE_URL + '/v1', apiKey: process.env.API_KEY, maxRetries: 0, timeout: 60000 });

const tools = [{
  type: 'function', name: 'get_weather', description: 'Current weather',
  parameters: { type: 'object', properties: { city: { type: 'string' } } },
}];

test('responses: a whole response with output_text and usage', async () => {
  const r = await client.responses.create({ model: MODEL, input: 'Hello!', max_output_tokens: 8, temperature: 0 });
  assert.match(r.id, /^resp_/);
  assert.equal(r.object, 'response');
  assert.equal(r.model, MODEL);
  assert.equal(r.status, 'incomplete');  // random weights: the 8 tokens run out
  assert.equal(r.incomplete_details.reason, 'max_output_tokens');
  assert.equal(r.output.length, 1);
  assert.equal(r.output[0].type, 'message');
  assert.equal(typeof r.output_text, 'string');  // the SDK joins the output_text parts
  assert.ok(r.output_text.length > 0);
  assert.equal(r.output_text, r.output[0].content[0].text);
  assert.equal(r.usage.output_tokens, 8);
  assert.equal(r.usage.total_tokens, r.usage.input_tokens + 8);
});

test('responses: the stream rebuilds the whole response (greedy)', async () => {
  const args = { model: MODEL, input: 'Stream this, please.', instructions: 'Answer briefly.', max_output_tokens: 12, temperature: 0 };
  const whole = await client.responses.create(args);
  const types = [];
  let text = '', last = null, seq = -1;
  for await (const ev of await client.responses.create({ ...args, stream: true })) {
    types.push(ev.type);
    assert.equal(ev.sequence_number, seq + 1);
    seq = ev.sequence_number;
    if (ev.type === 'response.output_text.delta') text += ev.delta;
    if (ev.response) last = ev.response;
  }
  assert.equal(types[0], 'response.created');
  assert.equal(types[1], 'response.in_progress');
  assert.ok(types.includes('response.output_item.added'));
  assert.ok(types.includes('response.content_part.added'));
  assert.ok(types.includes('response.output_text.done'));
  assert.ok(types.includes('response.output_item.done'));
  assert.equal(types.at(-1), 'response.incomplete');
  assert.equal(text, whole.output_text);
  assert.equal(last.output[0].content[0].text, text);
  assert.equal(last.usage.output_tokens, 12);
  assert.equal(last.instructions, 'Answer briefly.');
});

test('responses: reasoning items out and back in, tools and tool results', async () => {
  const r = await client.responses.create({ model: MODEL, input: 'Think first.', reasoning: { effort: 'high' }, max_output_tokens: 10, temperature: 0 });
  // Random weights never close </think>: everything is (truncated) reasoning.
  assert.equal(r.output[0].type, 'reasoning');
  assert.ok(r.output[0].content[0].text.length > 0);
  assert.equal(r.usage.output_tokens_details.reasoning_tokens, 10);
  const noThinking = await client.responses.create({ model: MODEL, input: 'Think first.', reasoning: { effort: 'none' }, max_output_tokens: 10, temperature: 0 });
  assert.equal(noThinking.output[0].type, 'message');

  const plain = await client.responses.create({ model: MODEL, input: 'Weather in Paris?', max_output_tokens: 4 });
  const withTools = await client.responses.create({ model: MODEL, input: 'Weather in Paris?', tools, max_output_tokens: 4 });
  assert.ok(withTools.usage.input_tokens > plain.usage.input_tokens);  // the tool schema is in the prompt
  assert.deepEqual(withTools.tools.map((t) => t.name), ['get_weather']);
  const followUp = await client.responses.create({
    model: MODEL, tools, max_output_tokens: 4,
    input: [
      { role: 'user', content: 'Weather in Paris?' },
      { type: 'reasoning', id: 'rs_1', summary: [], content: [{ type: 'reasoning_text', text: 'I should call the tool.' }] },
      { type: 'function_call', call_id: 'call_1', name: 'get_weather', arguments: '{"city":"Paris"}' },
      { type: 'function_call_output', call_id: 'call_1', output: 'sunny and 21 degrees' },
    ],
  });
  assert.ok(followUp.usage.input_tokens > withTools.usage.input_tokens);
  // A forced call: the model must open a call to get_weather (arguments are its own).
  const forced = await client.responses.create({
    model: MODEL, input: 'Weather?', tools, tool_choice: { type: 'function', name: 'get_weather' }, max_output_tokens: 40, temperature: 0,
  });
  const opened = forced.output.some((o) => o.type === 'function_call' && o.name === 'get_weather') ||
    forced.output_text.includes('invoke name="get_weather"');
  assert.ok(opened, JSON.stringify(forced.output));
});

test('responses: what a stateless server cannot do is a 400', async () => {
  await assert.rejects(client.responses.create({ model: MODEL, input: 'x', previous_response_id: 'resp_123' }), (e) => {
    assert.equal(e.status, 400);
    assert.ok(e instanceof OpenAI.BadRequestError);
    assert.equal(e.param, 'previous_response_id');
    return true;
  });
  await assert.rejects(client.responses.create({ model: MODEL, input: 'x', tools: [{ type: 'web_search' }] }), (e) => e.status === 400);
});

test("chat: DeepSeek's thinking object and reasoning_effort switch thinking", async () => {
  const ask = (extra) => client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Think first.' }], max_tokens: 6, temperature: 0, ...extra });
  const viaKwargs = await ask({ chat_template_kwargs: { thinking: true } });
  for (const extra of [{ thinking: { type: 'enabled' } }, { reasoning_effort: 'high' }, { enable_thinking: true }]) {
    const r = await ask(extra);
    assert.equal(r.choices[0].message.reasoning_content, viaKwargs.choices[0].message.reasoning_content, JSON.stringify(extra));
    assert.equal(r.usage.prompt_tokens, viaKwargs.usage.prompt_tokens);
  }
  for (const extra of [{ thinking: { type: 'disabled' } }, { reasoning_effort: 'none' }]) {
    const r = await ask(extra);
    assert.equal(r.choices[0].message.reasoning_content, null, JSON.stringify(extra));
  }
  // chat_template_kwargs wins over DeepSeek's object.
  const both = await ask({ chat_template_kwargs: { thinking: false }, thinking: { type: 'enabled' } });
  assert.equal(both.choices[0].message.reasoning_content, null);
  await assert.rejects(ask({ reasoning_effort: 'minimal' }), (e) => e.status === 400 && e.param === 'reasoning_effort');
  await assert.rejects(ask({ thinking: { type: 'auto' } }), (e) => e.status === 400 && /thinking.type/.test(e.message));
});
