// What a request costs in limiter object calls (x-sluice-debug-object-calls, test hooks
// only): rules that count by the same key share one object, so one call decides them all;
// a remembered denial costs no call; rules with different keys cost one call per object,
// plus a refund call to an object that committed when another one denied, so that the
// request still spends nothing anywhere (all or nothing).
import { test } from "node:test";
import assert from "node:assert/strict";
import { startWorker } from "./support/runtime.js";
import { startOrigin } from "./support/origin.js";

async function send(worker, { peer = "203.0.113.7", atMs = 0, path = "/" } = {}) {
  const response = await worker.fetch(`http://api.example.com${path}`, {
    headers: { "x-sluice-test-peer": peer, "x-sluice-test-now-ms": String(atMs) },
  });
  await response.text();
  return {
    status: response.status,
    calls: Number(response.headers.get("x-sluice-debug-object-calls")),
    cache: response.headers.get("x-sluice-debug-negative-cache"),
    retryAfter: response.headers.get("retry-after"),
    ratelimit: response.headers.get("ratelimit"),
  };
}

test("rules on the same key cost one object call; cached denials cost none", async () => {
  const origin = await startOrigin();
  const config = {
    rules: [
      { name: "burst", key: ["client_ip"], limit: { requests: 2, period: "1s" }, algorithm: "gcra" },
      { name: "hourly", key: ["client_ip"], limit: { requests: 100, period: "1h" }, algorithm: "fixed_window" },
      { name: "daily", key: ["client_ip"], limit: { requests: 1000, period: "1d" }, algorithm: "sliding_window" },
    ],
  };
  const worker = await startWorker({ config, origin: origin.url });
  try {
    const first = await send(worker);
    assert.deepEqual([first.status, first.calls, first.cache], [200, 1, "miss"]);
    const second = await send(worker);
    assert.deepEqual([second.status, second.calls], [200, 1]);
    const denied = await send(worker);
    assert.deepEqual([denied.status, denied.calls, denied.cache], [429, 1, "miss"]);
    // GCRA 2 per second: one comes back every 500 ms.
    assert.equal(denied.retryAfter, "1");
    for (let i = 0; i < 20; i++) {
      const again = await send(worker, { atMs: 10 * i });
      assert.deepEqual([again.status, again.calls, again.cache], [429, 0, "hit"], `request ${i}`);
      assert.equal(again.ratelimit, denied.ratelimit);
    }
    // At the retry time the object is asked again, and admits.
    const later = await send(worker, { atMs: 500 });
    assert.deepEqual([later.status, later.calls, later.cache], [200, 1, "miss"]);
    // Every rule counted exactly the 3 admitted requests: hourly has 97 left.
    assert.equal(later.ratelimit.split(", ")[1], '"hourly";r=97;t=3600');
    assert.equal(origin.received.length, 3);
  } finally {
    await worker.dispose();
    await origin.close();
  }
});

test("rules on different keys cost one call per object and stay all or nothing", async () => {
  const origin = await startOrigin();
  const config = {
    rules: [
      { name: "per-client", key: ["client_ip"], limit: { requests: 3, period: "1m" }, algorithm: "fixed_window" },
      { name: "global", key: [{ const: "all" }], limit: { requests: 2, period: "1m" }, algorithm: "fixed_window" },
    ],
  };
  const worker = await startWorker({ config, origin: origin.url });
  try {
    const a = await send(worker, { peer: "203.0.113.7" });
    assert.deepEqual([a.status, a.calls], [200, 2]);
    const b = await send(worker, { peer: "198.51.100.1" });
    assert.deepEqual([b.status, b.calls], [200, 2]);
    // The global rule is spent: per-client commits in its object, then is refunded.
    const c = await send(worker, { peer: "203.0.113.7" });
    assert.deepEqual([c.status, c.calls], [429, 3]);
    assert.equal(c.ratelimit, '"global";r=0;t=60');
    // Cached now: no call at all.
    const d = await send(worker, { peer: "203.0.113.7" });
    assert.deepEqual([d.status, d.calls, d.cache], [429, 0, "hit"]);
    // The next window: both whole again.
    const e = await send(worker, { peer: "203.0.113.7", atMs: 60_000 });
    assert.equal(e.status, 200);
    assert.equal(e.ratelimit, '"per-client";r=2;t=60, "global";r=1;t=60');
    assert.equal(origin.received.length, 3);
  } finally {
    await worker.dispose();
    await origin.close();
  }
});

test("a refund gives back what the other object committed", async () => {
  const origin = await startOrigin();
  const config = {
    rules: [
      { name: "per-client", key: ["client_ip"], limit: { requests: 2, period: "1m" }, algorithm: "fixed_window" },
      { name: "per-path", key: ["path"], limit: { requests: 1, period: "1m" }, algorithm: "fixed_window" },
    ],
  };
  const worker = await startWorker({ config, origin: origin.url });
  try {
    assert.equal((await send(worker, { path: "/a" })).status, 200);
    // /a is spent for everyone: denied by per-path, per-client (committed) is refunded.
    const denied = await send(worker, { path: "/a" });
    assert.deepEqual([denied.status, denied.calls], [429, 3]);
    // So the client still has its second unit for /b.
    const b = await send(worker, { path: "/b" });
    assert.equal(b.status, 200);
    assert.equal(b.ratelimit, '"per-client";r=0;t=60, "per-path";r=0;t=60');
  } finally {
    await worker.dispose();
    await origin.close();
  }
});
