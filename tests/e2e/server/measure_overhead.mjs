// The server layer's CPU cost per engine step: N concurrent streaming chat requests of M tokens
// against fake_serve (the fake engine emits one token per running request per step), measured as
// the CPU time of the server's I/O threads (named dsserve-http) from /proc.
//   node measure_overhead.mjs BASE_URL PID N M
import { readFileSync, readdirSync } from 'node:fs';

const [base, pid, nArg, mArg] = process.argv.slice(2);
const N = Number(nArg), M = Number(mArg);
const ticks = 100;  // USER_HZ

function httpCpuSeconds() {
  let total = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    if (name !== 'dsserve-http') continue;
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    total += (Number(f[11]) + Number(f[12])) / ticks;  // utime + stime
  }
  return total;
}

async function one(i) {
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages: [{ role: 'user', content: `request ${i}` }], max_tokens: M, ignore_eos: true, stream: true }),
  });
  let text = '';
  const dec = new TextDecoder();
  for await (const piece of res.body) text += dec.decode(piece, { stream: true });
  return text.split('\n\n').filter((e) => e.startsWith('data: ')).length;
}

const cpu0 = httpCpuSeconds();
const t0 = Date.now();
const events = (await Promise.all(Array.from({ length: N }, (_, i) => one(i)))).reduce((a, b) => a + b, 0);
const wall = (Date.now() - t0) / 1000;
const cpu = httpCpuSeconds() - cpu0;
console.log(JSON.stringify({ running: N, tokens_each: M, events, wall_s: wall, http_cpu_s: cpu,
  http_cpu_ms_per_step: (1000 * cpu) / M, http_cpu_us_per_token: (1e6 * cpu) / (N * M) }));
