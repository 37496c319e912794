// Leases (a rule's `lease`): an isolate holds a slice of a key's quota granted by the key's
// limiter object and decides from it locally, renewing in the background, returning what it
// did not spend when the slice expires. These tests prove what a lease saves (object calls
// per request for a hot key, with against without), what it costs (admitted requests stay
// within limit + isolates x lease size), that expired slices come back to the object for
// other isolates to use (on the test clock, and on the runtime's clock with no further
// request), that a request denied by another rule gives its units back to the slice, and
// that a remembered denial still costs no call.
// x-sluice-debug-stats carries the isolate's counters (test hooks only).
import { test } from "node:test";
import assert from "node:assert/strict";
import { startIsolates, startWorker } from "./support/runtime.js";
import { startOrigin } from "./support/origin.js";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function parseStats(header) {
  return Object.fromEntries((header ?? "").split(",").filter(Boolean).map((pair) => {
    const [name, value] = pair.split("=");
    return [name, Number(value)];
  }));
}

async function read(response) {
  await response.text();
  return {
    status: response.status,
    calls: Number(response.headers.get("x-sluice-debug-object-calls")),
    cache: response.headers.get("x-sluice-debug-negative-cache"),
    ratelimit: response.headers.get("ratelimit"),
    stats: parseStats(response.headers.get("x-sluice-debug-stats")),
  };
}

function headers({ peer = "203.0.113.7", atMs } = {}) {
  const h = { "x-sluice-test-peer": peer };
  if (atMs !== undefined) h["x-sluice-test-now-ms"] = String(atMs);
  return h;
}

// One hot key on the runtime's clock, sequential requests: object calls per request
// (decides, lease calls in the request and in the background), from the isolate's counters.
async function callsPerRequest(lease, requests) {
  const origin = await startOrigin();
  const rule = { name: "hot", key: ["client_ip"], limit: { requests: 1_000_000, period: "1h" }, algorithm: "gcra" };
  if (lease) rule.lease = lease;
  const worker = await startWorker({ config: { rules: [rule] }, origin: origin.url });
  try {
    let last;
    for (let i = 0; i < requests; i++) {
      last = await read(await worker.fetch("http://api.example.com/", { headers: headers() }));
      assert.equal(last.status, 200, `request ${i}`);
    }
    // Background renewals started by the last requests have ended by now; one more request
    // reads the counters.
    await sleep(200);
    const end = await read(await worker.fetch("http://api.example.com/", { headers: headers() }));
    return { ...end.stats, perRequest: end.stats.object_calls / end.stats.requests };
  } finally {
    await worker.dispose();
    await origin.close();
  }
}

test("a hot key with lease size 20 costs at most 0.1 object calls per request; without, 1", async () => {
  const without = await callsPerRequest(undefined, 300);
  const leased = await callsPerRequest({ size: 20, lifetime: "10s" }, 300);
  console.log(
    `leases: hot key, 301 sequential requests: ${without.perRequest.toFixed(3)} object calls per request without a lease, ` +
      `${leased.perRequest.toFixed(3)} with lease size 20 (acquired ${leased.lease_acquired}, renewed ${leased.lease_renewed}, ` +
      `local ${leased.lease_local})`,
  );
  assert.equal(without.perRequest, 1);
  assert.ok(leased.perRequest <= 0.1, JSON.stringify(leased));
  assert.ok(leased.lease_renewed >= 10, "slices were renewed in the background");
  assert.ok(leased.lease_local >= 270, JSON.stringify(leased));
});

test("two isolates hammering one key admit at most limit + 2 x lease size in any window", async () => {
  // 40 per 1 s fixed window, slices of 10 living 1 s. The bound's only source is a slice
  // granted in one window and spent in the next: so each isolate takes one late in a quiet
  // window (at 900 ms: 10 granted, 1 spent, 9 held), and both hammer the next window.
  const LIMIT = 40;
  const SIZE = 10;
  const config = {
    rules: [
      {
        name: "hammered",
        key: ["client_ip"],
        limit: { requests: LIMIT, period: "1s" },
        algorithm: "fixed_window",
        lease: { size: SIZE, lifetime: "1s" },
      },
    ],
  };
  const origin = await startOrigin();
  const isolates = await startIsolates(2, { config, origin: origin.url });
  try {
    const admitted = [0, 0, 0, 0];
    const round = async (atMs, which) => {
      const responses = await Promise.all(
        which.map((i) => isolates.fetch(i, "http://api.example.com/", { headers: headers({ atMs }) })),
      );
      for (const response of responses) {
        if ((await read(response)).status === 200) admitted[Math.floor(atMs / 1000)]++;
      }
    };
    for (const quiet of [0, 2000]) {
      await round(quiet + 900, [0, 1]);
      for (let atMs = quiet + 1000; atMs < quiet + 2000; atMs += 10) await round(atMs, [0, 1, 0, 1]);
    }
    console.log(`leases: two isolates, limit ${LIMIT}/s, size ${SIZE}: admitted per 1 s window ${admitted.join(", ")}`);
    for (const n of admitted) assert.ok(n <= LIMIT + 2 * SIZE, `admitted ${n} in a window: ${admitted}`);
    // The hammered windows get the limit plus what was held from the quiet one: 40 + 2 x 9.
    assert.deepEqual(admitted, [2, LIMIT + 18, 2, LIMIT + 18]);
    // Every admitted unit was granted in some window, within its limit.
    assert.ok(admitted[0] + admitted[1] <= 2 * LIMIT);
    assert.equal(origin.received.length, admitted.reduce((a, b) => a + b));
  } finally {
    await isolates.dispose();
    await origin.close();
  }
});

test("an expired slice goes back to the object and another isolate spends it (test clock)", async () => {
  const config = {
    rules: [
      {
        name: "shared",
        key: ["client_ip"],
        limit: { requests: 30, period: "1h" },
        algorithm: "fixed_window",
        lease: { size: 20, lifetime: "1s" },
      },
    ],
  };
  const origin = await startOrigin();
  const isolates = await startIsolates(3, { config, origin: origin.url });
  const send = async (i, atMs, peer) =>
    read(await isolates.fetch(i, "http://api.example.com/", { headers: headers({ atMs, peer }) }));
  try {
    // Isolate 0 takes a slice of 20 and spends 1: 19 held.
    const first = await send(0, 0);
    assert.deepEqual([first.status, first.calls, first.stats.lease_acquired], [200, 1, 1]);
    // Isolate 1 gets the other 10 (one slice of 10) and spends them.
    for (let i = 0; i < 10; i++) assert.equal((await send(1, 0)).status, 200, `isolate 1, request ${i}`);
    // Isolate 2 finds nothing left: isolate 0 holds 19, expired at 1 s but not yet returned.
    const probe = await send(2, 1200);
    assert.deepEqual([probe.status, probe.ratelimit], [429, '"shared";r=0;t=3599']);
    // Any request to isolate 0 after its slice expired sends the 19 units back (here for
    // another client, so in the background).
    const other = await send(0, 1500, "198.51.100.1");
    assert.equal(other.status, 200);
    await sleep(300);
    const counters = (await send(0, 1500, "198.51.100.1")).stats;
    assert.deepEqual([counters.lease_expired, counters.lease_returned], [1, 19], JSON.stringify(counters));
    // Isolate 1 spends them: 19 more, then nothing.
    for (let i = 0; i < 19; i++) assert.equal((await send(1, 1500)).status, 200, `isolate 1 again, request ${i}`);
    const spent = await send(1, 1500);
    assert.equal(spent.status, 429);
    assert.equal(origin.received.length, 1 + 10 + 1 + 1 + 19);
  } finally {
    await isolates.dispose();
    await origin.close();
  }
});

test("an idle isolate returns its expired slice on its own (runtime clock)", async () => {
  const config = {
    rules: [
      {
        name: "shared",
        key: ["client_ip"],
        limit: { requests: 30, period: "1d" },
        algorithm: "fixed_window",
        lease: { size: 20, lifetime: "4s" },
      },
    ],
  };
  const origin = await startOrigin();
  const isolates = await startIsolates(3, { config, origin: origin.url });
  const send = async (i) => read(await isolates.fetch(i, "http://api.example.com/", { headers: headers() }));
  try {
    assert.equal((await send(0)).status, 200); // 19 held by isolate 0
    for (let i = 0; i < 10; i++) assert.equal((await send(1)).status, 200, `isolate 1, request ${i}`);
    assert.equal((await send(2)).status, 429, "nothing left while isolate 0 holds its slice");
    // Isolate 0 gets no further request; its slice expires 4 s after it arrived and goes back.
    await sleep(5000);
    for (let i = 0; i < 19; i++) assert.equal((await send(1)).status, 200, `isolate 1 again, request ${i}`);
    assert.equal((await send(1)).status, 429);
  } finally {
    await isolates.dispose();
    await origin.close();
  }
});

test("units taken for a request another rule denies go back to the slice", async () => {
  const origin = await startOrigin();
  const config = {
    rules: [
      {
        name: "per-client",
        key: ["client_ip"],
        limit: { requests: 10, period: "1h" },
        algorithm: "fixed_window",
        lease: { size: 5, lifetime: "10m" },
      },
      { name: "global", key: [{ const: "all" }], limit: { requests: 2, period: "1m" }, algorithm: "fixed_window" },
    ],
  };
  const worker = await startWorker({ config, origin: origin.url });
  const send = async (atMs) => read(await worker.fetch("http://api.example.com/", { headers: headers({ atMs }) }));
  try {
    // A slice of 5 (the object has 5 left), 1 spent; the global rule's object decides.
    const first = await send(0);
    assert.deepEqual([first.status, first.calls], [200, 2]);
    assert.equal(first.ratelimit, '"per-client";r=9;t=3600, "global";r=1;t=60');
    // From the slice: one call, to the global rule's object.
    const second = await send(0);
    assert.deepEqual([second.status, second.calls], [200, 1]);
    // The global rule denies: the per-client unit goes back to the slice (no call for it).
    const third = await send(0);
    assert.deepEqual([third.status, third.calls], [429, 1]);
    // The next minute: the slice still holds 3, so 5 + 3 - 1 remain after this one.
    const fourth = await send(60_000);
    assert.deepEqual([fourth.status, fourth.calls], [200, 1]);
    assert.equal(fourth.ratelimit, '"per-client";r=7;t=3540, "global";r=1;t=60');
    assert.equal(fourth.stats.lease_local, 3);
  } finally {
    await worker.dispose();
    await origin.close();
  }
});

test("a denial remembered for a leased key costs no object call", async () => {
  const origin = await startOrigin();
  const config = {
    rules: [
      {
        name: "leased",
        key: ["client_ip"],
        limit: { requests: 5, period: "1m" },
        algorithm: "gcra",
        lease: { size: 3, lifetime: "10s" },
      },
    ],
  };
  const worker = await startWorker({ config, origin: origin.url });
  const send = async (atMs) => read(await worker.fetch("http://api.example.com/", { headers: headers({ atMs }) }));
  try {
    let admitted = 0;
    for (let i = 0; i < 5; i++) admitted += (await send(0)).status === 200 ? 1 : 0;
    assert.equal(admitted, 5);
    const denied = await send(1);
    assert.deepEqual([denied.status, denied.cache], [429, "miss"]);
    for (let i = 0; i < 10; i++) {
      const again = await send(2 + i);
      assert.deepEqual([again.status, again.calls, again.cache], [429, 0, "hit"], `request ${i}`);
    }
    // GCRA 5 per minute: one unit back after 12 s; the object is asked again and grants it.
    const later = await send(12_001);
    assert.deepEqual([later.status, later.cache], [200, "miss"]);
    assert.ok(later.stats.negative_cache >= 10, JSON.stringify(later.stats));
  } finally {
    await worker.dispose();
    await origin.close();
  }
});

test("50 concurrent requests for one key with a lease admit exactly the limit", async () => {
  // One isolate: the first request acquires the slice, the others wait for it (and for the
  // renewals) rather than each asking for a slice of its own.
  const origin = await startOrigin();
  const config = {
    rules: [
      {
        name: "per-client",
        key: ["client_ip"],
        limit: { requests: 30, period: "1m" },
        algorithm: "sliding_window",
        lease: { size: 8 },
      },
    ],
  };
  const worker = await startWorker({ config, origin: origin.url });
  try {
    const responses = await Promise.all(
      Array.from({ length: 50 }, () => worker.fetch("http://api.example.com/", { headers: headers({ atMs: 1000 }) })),
    );
    const results = await Promise.all(responses.map(read));
    const statuses = results.map((r) => r.status);
    assert.equal(statuses.filter((s) => s === 200).length, 30, `statuses: ${statuses}`);
    assert.equal(origin.received.length, 30);
    const calls = results.reduce((sum, r) => sum + r.calls, 0);
    assert.ok(calls < 50, `${calls} object calls for 50 requests`);
  } finally {
    await worker.dispose();
    await origin.close();
  }
});
