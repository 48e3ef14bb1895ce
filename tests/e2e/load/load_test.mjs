// Load test over loopback: N concurrent streaming chat clients against a running dsserve, a share
// of them disconnecting at random moments. Every client that stays must get a complete stream
// (content, a final finish_reason, usage, [DONE]); afterwards the server must be idle with no KV
// page held outside the prefix cache (nothing lost, nothing leaked).
//   node load_test.mjs BASE_URL [clients=256] [disconnect_share=0.3] [seed=1]
const [base, nArg, shareArg, seedArg] = process.argv.slice(2);
const N = Number(nArg ?? 256), share = Number(shareArg ?? 0.3);
let state = Number(seedArg ?? 1) >>> 0;
const rand = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32);

const fail = (msg) => { console.error(`FAIL: ${msg}`); process.exit(1); };
const models = await (await fetch(`${base}/v1/models`)).json();
const model = models.data[0].id;

async function client(i) {
  const maxTokens = 4 + Math.floor(rand() * 28);
  const disconnect = rand() < share;
  const ctl = new AbortController();
  if (disconnect) setTimeout(() => ctl.abort(), Math.floor(rand() * 3000));
  const body = {
    model, max_tokens: maxTokens, stream: true, stream_options: { include_usage: true }, ignore_eos: true,
    temperature: 0.7, seed: i,
    messages: [{ role: 'system', content: 'You are a load test.' }, { role: 'user', content: `Client ${i} says ${'hi '.repeat(i % 40)}` }],
  };
  let text = '', finish = null, usage = null, done = false;
  try {
    const res = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: ctl.signal,
    });
    if (res.status !== 200) return { i, error: `HTTP ${res.status}: ${await res.text()}` };
    const decoder = new TextDecoder();
    let buf = '';
    for await (const piece of res.body) {
      buf += decoder.decode(piece, { stream: true });
      let nl;
      while ((nl = buf.indexOf('\n\n')) >= 0) {
        const event = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        if (!event.startsWith('data: ')) continue;
        const data = event.slice(6);
        if (data === '[DONE]') { done = true; continue; }
        const chunk = JSON.parse(data);
        if (chunk.error) return { i, error: JSON.stringify(chunk.error) };
        for (const c of chunk.choices ?? []) {
          text += c.delta?.content ?? '';
          text += c.delta?.reasoning_content ?? '';
          if (c.finish_reason) finish = c.finish_reason;
        }
        if (chunk.usage) usage = chunk.usage;
      }
    }
  } catch (e) {
    if (disconnect && e.name === 'AbortError') return { i, disconnected: true };
    return { i, error: String(e) };
  }
  if (!done) return { i, error: 'stream ended without [DONE]' };
  if (finish !== 'length') return { i, error: `finish_reason ${finish}, want length (ignore_eos)` };
  if (!usage || usage.completion_tokens !== maxTokens) return { i, error: `usage ${JSON.stringify(usage)}, want ${maxTokens} completion tokens` };
  return { i, completed: true, disconnected: false };
}

const t0 = Date.now();
const results = await Promise.all(Array.from({ length: N }, (_, i) => client(i)));
const errors = results.filter((r) => r.error);
const completed = results.filter((r) => r.completed).length;
const disconnected = results.filter((r) => r.disconnected).length;
console.log(`${N} clients in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${completed} complete, ${disconnected} disconnected, ${errors.length} errors`);
for (const e of errors.slice(0, 5)) console.error(`client ${e.i}: ${e.error}`);
if (errors.length) fail(`${errors.length} clients failed`);
if (completed + disconnected !== N) fail('some clients are unaccounted for');

// The server must drain: no running or queued request, no page outside the prefix cache.
// /get_server_info carries the engine state as SGLang does: internal_states[0].
const engineState = async () => (await (await fetch(`${base}/get_server_info`)).json()).internal_states[0];
const drained = (e) => e.num_running_reqs === 0 && e.num_queue_reqs === 0 && e.used_pages === e.cached_pages;
let e;
for (let k = 0; k < 100; ++k) {
  e = await engineState();
  if (drained(e)) break;
  await new Promise((r) => setTimeout(r, 100));
}
if (!drained(e)) fail(`server not drained: ${JSON.stringify(e)}`);
const health = await fetch(`${base}/health`);
if (health.status !== 200) fail(`/health ${health.status}`);
console.log(`drained: ${JSON.stringify({ running: e.num_running_reqs, queued: e.num_queue_reqs, used_pages: e.used_pages, cached_pages: e.cached_pages, requests_total: e.requests_total })}`);
