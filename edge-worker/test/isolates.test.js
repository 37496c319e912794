// What one isolate's negative cache cannot know: commits made through other isolates since it
// last heard from an object. They only add to a key's spend, so a remembered denial is still a
// denial, and its Retry-After is never later than the objects' (the client is never sent back
// too late); when the client comes back at that time, the objects are asked and give the rest
// of the wait. Two copies of the worker in separate isolates share the limiter objects here,
// as the isolates of one deployment do.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startIsolates } from "./support/runtime.js";
import { startOrigin } from "./support/origin.js";

// GCRA 10 per 10 s (T = 1 s, burst 10), cost from x-cost.
const config = {
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

async function send(isolates, i, atMs, cost) {
  const response = await isolates.fetch(i, "http://api.example.com/", {
    headers: { "x-sluice-test-peer": "203.0.113.7", "x-sluice-test-now-ms": String(atMs), "x-cost": String(cost) },
  });
  await response.text();
  return {
    status: response.status,
    calls: Number(response.headers.get("x-sluice-debug-object-calls")),
    cache: response.headers.get("x-sluice-debug-negative-cache"),
    retryAfter: Number(response.headers.get("retry-after")),
  };
}

test("a denial remembered by one isolate is never later than the objects' answer", async () => {
  const origin = await startOrigin();
  const isolates = await startIsolates(2, { config, origin: origin.url });
  try {
    assert.equal((await send(isolates, 0, 0, 8)).status, 200); // tat 8 s
    const denied = await send(isolates, 0, 0, 5);
    assert.deepEqual([denied.status, denied.cache, denied.retryAfter], [429, "miss", 3]);
    assert.equal((await send(isolates, 0, 0, 5)).cache, "hit", "isolate 0 remembers the denial");

    // Isolate 1 knows nothing of it (its own cache), and commits 2 units: tat 8 s -> 10 s.
    const other = await send(isolates, 1, 1000, 2);
    assert.deepEqual([other.status, other.calls], [200, 1]);

    // The objects' answer now: debt 14 s, 4 s to wait (isolate 1 has nothing remembered yet).
    const truth = await send(isolates, 1, 1000, 5);
    assert.deepEqual([truth.status, truth.calls, truth.cache, truth.retryAfter], [429, 1, "miss", 4]);
    // Isolate 0 answers from what it last saw (debt 12 s): still a denial, and an earlier
    // Retry-After than the truth, never a later one.
    const remembered = await send(isolates, 0, 1000, 5);
    assert.deepEqual([remembered.status, remembered.calls, remembered.cache], [429, 0, "hit"]);
    assert.equal(remembered.retryAfter, 2);
    assert.ok(remembered.retryAfter <= truth.retryAfter);

    // Back at the time it gave (3 s), isolate 0's state says the request fits, so it asks the
    // object, which knows of isolate 1's commit: 2 s more (debt 12 s).
    const back = await send(isolates, 0, 3000, 5);
    assert.deepEqual([back.status, back.calls, back.cache, back.retryAfter], [429, 1, "miss", 2]);
    // Now isolate 0 remembers the current state, and agrees with the objects again.
    const later = await send(isolates, 0, 4000, 5);
    assert.deepEqual([later.status, later.calls, later.cache, later.retryAfter], [429, 0, "hit", 1]);
    const fits = await send(isolates, 0, 5000, 5);
    assert.deepEqual([fits.status, fits.calls], [200, 1]);
    assert.equal(origin.received.length, 3);
  } finally {
    await isolates.dispose();
    await origin.close();
  }
});
