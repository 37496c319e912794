// The negative cache answers denials without an object call (x-sluice-debug-negative-cache:
// hit, 0 object calls) with exactly the objects' answer: it keeps the states its objects last
// reported, takes in every later commit and refund this isolate makes for those keys, and
// answers only when the core, deciding every rule of the request on those states, denies.
// (The shared vectors check the same answers hit or miss; these tests check they are hits.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { startWorker, waitForLog } from "./support/runtime.js";
import { startOrigin } from "./support/origin.js";

async function send(worker, { atMs = 0, path = "/", cost, delayMs } = {}) {
  const headers = { "x-sluice-test-peer": "203.0.113.7", "x-sluice-test-now-ms": String(atMs) };
  if (cost !== undefined) headers["x-cost"] = String(cost);
  if (delayMs !== undefined) headers["x-sluice-test-object-delay-ms"] = String(delayMs);
  const response = await worker.fetch(`http://api.example.com${path}`, { headers });
  await response.text();
  return {
    status: response.status,
    calls: Number(response.headers.get("x-sluice-debug-object-calls")),
    cache: response.headers.get("x-sluice-debug-negative-cache"),
    retryAfter: response.headers.get("retry-after"),
    ratelimit: response.headers.get("ratelimit"),
    limit: response.headers.get("x-ratelimit-limit"),
  };
}

// GCRA 10 per 10 s (T = 1 s, burst 10), cost from x-cost.
const metered = {
  response: { headers: "both" },
  rules: [
    {
      name: "metered",
      key: ["client_ip"],
      limit: { requests: 10, period: "10s" },
      algorithm: "gcra",
      cost: { header: "x-cost", default: 1, max: 10 },
    },
  ],
};

test("a commit of another cost updates the remembered state, and the next denial is the core's", async () => {
  const origin = await startOrigin();
  const worker = await startWorker({ config: metered, origin: origin.url });
  try {
    assert.equal((await send(worker, { cost: 8 })).status, 200); // tat 8 s
    const first = await send(worker, { cost: 5 });
    assert.deepEqual([first.status, first.cache, first.retryAfter], [429, "miss", "3"]);
    // Remembered: answered here, from the state at 0.5 s (debt 12.5 s -> 2.5 s).
    const again = await send(worker, { atMs: 500, cost: 5 });
    assert.deepEqual([again.status, again.calls, again.cache, again.retryAfter], [429, 0, "hit", "3"]);
    // A smaller cost fits: only the object can commit it (tat 8 s -> 10 s).
    const small = await send(worker, { atMs: 1000, cost: 2 });
    assert.deepEqual([small.status, small.calls, small.cache], [200, 1, "miss"]);
    // The remembered state now has that commit: debt 14 s, 4 s to wait (the old denial moved
    // in time would have said 2).
    const after = await send(worker, { atMs: 1000, cost: 5 });
    assert.deepEqual(
      [after.status, after.calls, after.cache, after.retryAfter, after.ratelimit],
      [429, 0, "hit", "4", '"metered";r=0;t=4'],
    );
    // Any cost the remembered state cannot fit is answered here: 7 units, 6 s.
    const other = await send(worker, { atMs: 1000, cost: 7 });
    assert.deepEqual([other.status, other.calls, other.cache, other.retryAfter], [429, 0, "hit", "6"]);
    // When the remembered state says the request fits, the object decides (and admits it).
    const fits = await send(worker, { atMs: 5000, cost: 5 });
    assert.deepEqual([fits.status, fits.calls, fits.cache], [200, 1, "miss"]);
    assert.equal(origin.received.length, 3);
  } finally {
    await worker.dispose();
    await origin.close();
  }
});

test("a denial answered from the cache reports every rule that denies", async () => {
  const origin = await startOrigin();
  const config = {
    response: { headers: "both" },
    rules: [
      { name: "search", match: { paths: ["/search"] }, key: ["client_ip"], limit: { requests: 2, period: "1m" }, algorithm: "sliding_log" },
      {
        name: "daily",
        key: ["client_ip"],
        limit: { requests: 5, period: "1d" },
        algorithm: "fixed_window",
        cost: { header: "x-cost", default: 1, max: 5 },
      },
    ],
  };
  const worker = await startWorker({ config, origin: origin.url });
  try {
    await send(worker, { path: "/search" });
    await send(worker, { atMs: 1000, path: "/search" });
    const one = await send(worker, { atMs: 2000, path: "/search", cost: 2 });
    assert.deepEqual([one.status, one.cache, one.ratelimit], [429, "miss", '"search";r=0;t=58']);
    // Only "daily" applies to /items: decided by the object, which spends 2 more of it.
    const items = await send(worker, { atMs: 3000, path: "/items", cost: 2 });
    assert.deepEqual([items.status, items.calls], [200, 1]);
    // Both rules deny now, and the cached answer says so, as the core does.
    const both = await send(worker, { atMs: 4000, path: "/search", cost: 2 });
    assert.deepEqual(
      [both.status, both.calls, both.cache, both.ratelimit, both.retryAfter, both.limit],
      [429, 0, "hit", '"search";r=0;t=56, "daily";r=0;t=86396', "86396", "5"],
    );
  } finally {
    await worker.dispose();
    await origin.close();
  }
});

test("shadow rules are decided and logged on a cache hit, as by the objects", async () => {
  const origin = await startOrigin();
  const config = {
    rules: [
      { name: "burst", key: ["client_ip"], limit: { requests: 100, period: "1s", burst: 1 }, algorithm: "gcra" },
      { name: "audit", key: ["client_ip"], limit: { requests: 1, period: "1m" }, algorithm: "fixed_window", mode: "shadow" },
    ],
  };
  const worker = await startWorker({ config, origin: origin.url });
  try {
    assert.equal((await send(worker)).status, 200);
    const first = await send(worker, { atMs: 5 });
    assert.deepEqual([first.status, first.cache, first.ratelimit], [429, "miss", '"burst";r=0;t=1']);
    for (let i = 0; i < 3; i++) {
      const again = await send(worker, { atMs: 5 });
      assert.deepEqual([again.status, again.calls, again.cache], [429, 0, "hit"]);
    }
    const line = 'sluice: rule "audit" (shadow) would deny key client_ip=203.0.113.7';
    const count = () => worker.logs.join("").split(line).length - 1;
    assert.ok(await waitForLog(worker, () => count() >= 4), worker.logs.join(""));
    assert.equal(count(), 4, "one shadow log line per denied request, hit or miss");
  } finally {
    await worker.dispose();
    await origin.close();
  }
});

test("while a call for a key is in flight, the cache does not answer for it", async () => {
  const origin = await startOrigin();
  // The object call of the commit below takes 1.5 s: well within the timeout.
  const worker = await startWorker({ config: metered, origin: origin.url, timeoutMs: 10_000 });
  try {
    await send(worker, { cost: 8 });
    assert.equal((await send(worker, { cost: 5 })).status, 429);
    assert.equal((await send(worker, { cost: 5 })).cache, "hit");
    // A commit on its way (its object waits 1.5 s): it may change the state any moment.
    const committing = send(worker, { atMs: 1000, cost: 2, delayMs: 1500 });
    await new Promise((r) => setTimeout(r, 300));
    const meanwhile = await send(worker, { atMs: 1000, cost: 5 });
    assert.deepEqual([meanwhile.status, meanwhile.calls, meanwhile.cache], [429, 1, "miss"]);
    assert.equal((await committing).status, 200);
    // Landed: remembered again, with the commit.
    const after = await send(worker, { atMs: 1000, cost: 5 });
    assert.deepEqual([after.calls, after.cache, after.retryAfter], [0, "hit", "4"]);
  } finally {
    await worker.dispose();
    await origin.close();
  }
});
