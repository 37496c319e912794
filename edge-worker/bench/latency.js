// Per-request latency in local workerd, with and without the worker in the path:
//   node bench/latency.js [requests]        (from edge-worker/, after `bash build.sh`)
// Sends N sequential HTTP requests over loopback (1) straight to a local origin, (2) through
// the worker (allowed: one limiter object call, then the origin), (3) through the worker for
// a client already denied (answered from the negative cache), (4) through the worker with two
// rules on different keys (two object calls in parallel), (5) and (6) one hot key without and
// with a lease of 20 (decided from the isolate's slice, renewed in the background); for these
// two the worker runs with its test hooks so that its counters (x-sluice-debug-stats) give the
// object calls per request. Prints median, p90 and p99 in milliseconds, and the ratio to the
// direct path. Numbers are of this machine, not of
// Cloudflare's network; they show what the worker itself adds. Durable Object storage goes
// to SLUICE_BENCH_STORAGE if set (e.g. a directory on tmpfs, to separate the cost of the
// SQLite commit's fsync from the rest), else to miniflare's temporary directory.
import { performance } from "node:perf_hooks";
import { startWorker } from "../test/support/runtime.js";
import { startOrigin } from "../test/support/origin.js";

const persist = process.env.SLUICE_BENCH_STORAGE;

const N = Number(process.argv[2] ?? 2000);
const WARMUP = 200;

function stats(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99) };
}

async function measure(url, headers) {
  const samples = [];
  let last;
  for (let i = 0; i < WARMUP + N; i++) {
    const started = performance.now();
    const response = await fetch(url, { headers });
    await response.arrayBuffer();
    const elapsed = performance.now() - started;
    if (i >= WARMUP) samples.push(elapsed);
    last = response;
  }
  return { ...stats(samples), debug: last.headers.get("x-sluice-debug-stats") };
}

/** Object calls per request from the worker's counters (`name=value,...`). */
function callsPerRequest(debug) {
  const counters = Object.fromEntries(debug.split(",").map((pair) => pair.split("=")).map(([n, v]) => [n, Number(v)]));
  return counters.object_calls / counters.requests;
}

const origin = await startOrigin();
const results = [];
results.push(["direct to origin", await measure(`${origin.url}/`, {})]);

const allowConfig = {
  rules: [{ name: "per-client", key: ["client_ip"], limit: { requests: 1_000_000_000, period: "1h" }, algorithm: "gcra" }],
};
let worker = await startWorker({ config: allowConfig, origin: origin.url, hooks: false, persist });
const url = (await worker.mf.ready).href;
results.push(["worker, allowed (1 object call)", await measure(url, { "cf-connecting-ip": "203.0.113.7" })]);
await worker.dispose();

const denyConfig = {
  rules: [{ name: "per-client", key: ["client_ip"], limit: { requests: 1, period: "1h" }, algorithm: "fixed_window" }],
};
worker = await startWorker({ config: denyConfig, origin: origin.url, hooks: false, persist });
const denyUrl = (await worker.mf.ready).href;
results.push(["worker, denied (negative cache)", await measure(denyUrl, { "cf-connecting-ip": "203.0.113.7" })]);
await worker.dispose();

const splitConfig = {
  rules: [
    allowConfig.rules[0],
    { name: "global", key: [{ const: "all" }], limit: { requests: 1_000_000_000, period: "1h" }, algorithm: "gcra" },
  ],
};
worker = await startWorker({ config: splitConfig, origin: origin.url, hooks: false, persist });
const splitUrl = (await worker.mf.ready).href;
results.push(["worker, 2 keys (2 object calls)", await measure(splitUrl, { "cf-connecting-ip": "203.0.113.7" })]);
await worker.dispose();

const hot = [];
for (const [name, lease] of [
  ["hot key, no lease", undefined],
  ["hot key, lease size 20", { size: 20 }],
]) {
  const rule = { ...allowConfig.rules[0] };
  if (lease) rule.lease = lease;
  worker = await startWorker({ config: { rules: [rule] }, origin: origin.url, hooks: true, persist });
  const hotUrl = (await worker.mf.ready).href;
  const s = await measure(hotUrl, { "cf-connecting-ip": "203.0.113.7" });
  results.push([`worker, ${name}`, s]);
  hot.push([name, callsPerRequest(s.debug)]);
  await worker.dispose();
}
await origin.close();

const base = results[0][1];
console.log(`${N} sequential requests per path (after ${WARMUP} warm-up), milliseconds:`);
for (const [name, s] of results) {
  console.log(
    `${name.padEnd(34)} p50 ${s.p50.toFixed(3)}  p90 ${s.p90.toFixed(3)}  p99 ${s.p99.toFixed(3)}  ` +
      `(p50 x${(s.p50 / base.p50).toFixed(1)})`,
  );
}
for (const [name, calls] of hot) {
  console.log(`${name}: ${calls.toFixed(3)} object calls per request (warm-up included)`);
}
