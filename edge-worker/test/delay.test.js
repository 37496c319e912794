// Delay (throttle) rules in the worker, beyond the shared delay_*.json vectors: a burst on the
// runtime's clock reaches the origin at the configured spacing (real timers, within a stated
// tolerance); on the test clock, a request beyond `delay.max` is denied and counts nothing,
// and one beyond `shaping.max_held` is denied and its units given back. (A client that leaves
// while held is seen through request.signal, which local workerd never aborts: see
// src/holding.rs.)
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { performance } from "node:perf_hooks";
import { startWorker } from "./support/runtime.js";
import { startOrigin } from "./support/origin.js";

const PEER = "203.0.113.7:41000";

/** A GCRA rule of `requests` per second, burst 1, holding up to `max`. */
function spaced(requests, max, extra = {}) {
  return {
    ...extra,
    rules: [
      { name: "spaced", key: ["client_ip"], limit: { requests, period: "1s", burst: 1 }, delay: { max } },
    ],
  };
}

/** Sends a request on the test clock at `atMs` (no clock: the runtime's). */
function request(worker, { atMs, peer = PEER } = {}) {
  const headers = { "x-sluice-test-peer": peer };
  if (atMs !== undefined) headers["x-sluice-test-now-ms"] = String(atMs);
  const pending = { settled: false };
  pending.promise = worker.fetch("http://api.example.com/items", { headers }).then(async (response) => {
    const body = await response.text();
    pending.settled = true;
    return { status: response.status, body, h: (n) => response.headers.get(n) };
  });
  return pending;
}

/** Moves the isolate's test clock to `atMs` and reports what it holds. */
async function held(worker, atMs) {
  const response = await worker.fetch("http://api.example.com/", {
    headers: { "x-sluice-test-now-ms": String(atMs), "x-sluice-test-inspect": "held" },
  });
  return (await response.json()).held;
}

/** Polls the isolate's held requests at `atMs` until `predicate` holds (or 5 s). */
async function heldUntil(worker, atMs, predicate) {
  const deadline = Date.now() + 5000;
  let list = await held(worker, atMs);
  while (!predicate(list) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    list = await held(worker, atMs);
  }
  return list;
}

test("a burst reaches the origin at the configured spacing on the runtime's clock", async () => {
  // 10 per second, burst 1: T = 100 ms. Six at once: the first at once, the k-th held k × T
  // after the first was decided, so the k-th reaches the origin at its slot, k × T after the
  // burst was sent, never earlier, and the burst leaves T apart on average.
  const T = 100;
  const count = 6;
  // How late a request may reach the origin after its slot: a hold ends at the slot on the
  // object's clock, but not before the object's answer has arrived, so a request is late by
  // as much as its own trip through the worker and its object takes beyond its slot (p99
  // 166 ms in the README's latency table on a quiet machine), plus timer lateness.
  const LATE_MS = 250;
  // How far the mean spacing over the burst may be from T.
  const SPACING_MS = 20;
  // The objects' storage on tmpfs where there is one, so a commit's fsync does not stand for
  // the hold (as in bench/latency.js with SLUICE_BENCH_STORAGE).
  const persist = fs.existsSync("/dev/shm") ? fs.mkdtempSync("/dev/shm/sluice-delay-") : undefined;
  const origin = await startOrigin();
  const worker = await startWorker({ config: spaced(1000 / T, "1s"), origin: origin.url, persist });
  try {
    // Warm the isolate and the key's object (one unit, back after T), so the burst measures
    // holds rather than the object's start.
    assert.equal((await request(worker).promise).status, 200);
    await new Promise((resolve) => setTimeout(resolve, 3 * T));
    const before = origin.received.length;
    const sent = performance.now();
    const answers = await Promise.all(Array.from({ length: count }, () => request(worker).promise));
    assert.deepEqual(answers.map((a) => a.status), Array(count).fill(200));
    const arrivals = origin.received.slice(before).map((r) => r.at - sent);
    assert.equal(arrivals.length, count);
    arrivals.sort((a, b) => a - b);
    const report = arrivals.map((at, k) => `#${k} at ${at.toFixed(1)} ms (slot ${k * T})`).join(", ");
    for (const [k, at] of arrivals.entries()) {
      // Date.now() in workerd moves in whole milliseconds: 1 ms of slack below the slot.
      assert.ok(at >= k * T - 1, `request ${k} reached the origin before its slot: ${report}`);
      assert.ok(at <= k * T + LATE_MS, `request ${k} reached the origin over ${LATE_MS} ms late: ${report}`);
    }
    const spacing = (arrivals[count - 1] - arrivals[0]) / (count - 1);
    assert.ok(Math.abs(spacing - T) <= SPACING_MS, `mean spacing ${spacing.toFixed(1)} ms, configured ${T} ms: ${report}`);
    console.log(`delay: a burst of ${count} at ${T} ms spacing reached the origin ${report}; mean spacing ${spacing.toFixed(1)} ms`);
  } finally {
    await worker.dispose();
    await origin.close();
    if (persist) fs.rmSync(persist, { recursive: true, force: true });
  }
});

test("a request beyond delay.max is denied at once and counts nothing", async () => {
  // 10 per second, burst 1: T = τ = 100 ms; max 200 ms: holds of 100 and 200 ms, then 300 ms
  // is over the max.
  const origin = await startOrigin();
  const worker = await startWorker({ config: spaced(10, "200ms"), origin: origin.url });
  try {
    assert.equal((await request(worker, { atMs: 0 }).promise).status, 200);
    const second = request(worker, { atMs: 0 });
    assert.deepEqual(await heldUntil(worker, 0, (l) => l.length === 1), [100]);
    const third = request(worker, { atMs: 0 });
    assert.deepEqual(await heldUntil(worker, 0, (l) => l.length === 2), [100, 200]);
    for (let i = 0; i < 2; i++) {
      const denied = await request(worker, { atMs: 0 }).promise;
      assert.equal(denied.status, 429);
      assert.equal(denied.h("retry-after"), "1", "300 ms to its slot, in whole seconds");
      assert.equal(denied.h("ratelimit"), '"spaced";r=0;t=1');
    }
    assert.deepEqual(await held(worker, 0), [100, 200], "the denials held nothing");
    assert.equal(origin.received.length, 1, "only the first has reached the origin");
    assert.deepEqual(await held(worker, 100), [200]);
    assert.equal((await second.promise).status, 200);
    assert.deepEqual(await held(worker, 200), []);
    assert.equal((await third.promise).status, 200);
    // Nothing was counted for the denials: at 200 ms the next is held 100 ms (tat 300 ms),
    // not 300 ms.
    const fourth = request(worker, { atMs: 200 });
    assert.deepEqual(await heldUntil(worker, 200, (l) => l.length === 1), [300]);
    await held(worker, 300);
    assert.equal((await fourth.promise).status, 200);
    assert.equal(origin.received.length, 4);
  } finally {
    await worker.dispose();
    await origin.close();
  }
});

test("beyond shaping.max_held a request is denied as without delay and its units are given back", async () => {
  const origin = await startOrigin();
  const worker = await startWorker({ config: spaced(10, "1s", { shaping: { max_held: 2 } }), origin: origin.url });
  try {
    assert.equal((await request(worker, { atMs: 0 }).promise).status, 200);
    const holding = [request(worker, { atMs: 0 })];
    await heldUntil(worker, 0, (l) => l.length === 1);
    holding.push(request(worker, { atMs: 0 }));
    assert.deepEqual(await heldUntil(worker, 0, (l) => l.length === 2), [100, 200]);
    // A third hold (300 ms) is one too many: denied, told to come back when its slot would
    // have come (300 ms: Retry-After 1), and its unit given back to the object.
    const refused = await request(worker, { atMs: 0 }).promise;
    assert.equal(refused.status, 429);
    assert.equal(refused.h("retry-after"), "1");
    assert.equal(refused.h("ratelimit"), '"spaced";r=0;t=1');
    assert.match(refused.h("x-sluice-debug-stats"), /held=2,held_refused=1,/);
    // The first held request goes on at 100 ms, which frees a place: the next request is
    // held until 300 ms (tat 300 ms after the refund), not 400 ms.
    assert.deepEqual(await held(worker, 100), [200]);
    assert.equal((await holding[0].promise).status, 200);
    const next = request(worker, { atMs: 100 });
    assert.deepEqual(await heldUntil(worker, 100, (l) => l.length === 2), [200, 300]);
    await held(worker, 300);
    assert.deepEqual(
      (await Promise.all([holding[1].promise, next.promise])).map((a) => a.status),
      [200, 200],
    );
    assert.equal(origin.received.length, 4, "the refused request never reached the origin");
  } finally {
    await worker.dispose();
    await origin.close();
  }
});
