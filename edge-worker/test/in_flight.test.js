// Concurrency rules in the worker, beyond the shared concurrency_*.json vectors: N requests
// held long by the origin take the key's N slots and the next is denied; each slot comes back
// when its forward ends, whether the origin answered, answered an error or dropped the
// connection; and a slot whose forward never ends comes back on its own after slot_ttl, on the
// runtime's clock.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startWorker } from "./support/runtime.js";
import { startOrigin } from "./support/origin.js";

const MAX = 3;

function config(slotTtl = "60s") {
  return {
    rules: [{ name: "in-flight", key: [{ header: "x-api-key" }], concurrency: { max: MAX, slot_ttl: slotTtl } }],
  };
}

/** Sends a request of key `key`; `hold` names it for the origin to hold (support/origin.js). */
function request(worker, { key = "k1", hold, headers = {} } = {}) {
  const all = { "x-api-key": key, ...headers };
  if (hold !== undefined) all["x-origin-hold"] = hold;
  const pending = { settled: false };
  pending.promise = worker.fetch("http://api.example.com/work", { headers: all }).then(async (response) => {
    const body = await response.text();
    pending.settled = true;
    return { status: response.status, body, h: (n) => response.headers.get(n) };
  });
  return pending;
}

/** How many of the isolate's requests hold slots not given back yet. */
async function holdingSlots(worker) {
  const response = await worker.fetch("http://api.example.com/", { headers: { "x-sluice-test-inspect": "held" } });
  return (await response.json()).holding_slots;
}

async function until(predicate, what) {
  const deadline = Date.now() + 5000;
  while (!(await predicate())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Starts MAX requests the origin holds under `name`, and waits until all reached it. */
async function fill(worker, origin, name) {
  const pending = Array.from({ length: MAX }, () => request(worker, { hold: name }));
  await until(() => origin.holding(name) === MAX, `${MAX} requests are in flight at the origin`);
  return pending;
}

test("N requests in flight take the key's N slots; the next is denied until one ends", async () => {
  const origin = await startOrigin();
  const worker = await startWorker({ config: config(), origin: origin.url });
  try {
    const long = await fill(worker, origin, "long");
    assert.equal(await holdingSlots(worker), MAX);
    const denied = await request(worker).promise;
    assert.equal(denied.status, 429);
    assert.equal(denied.h("retry-after"), "1");
    assert.equal(denied.h("ratelimit"), '"in-flight";r=0;t=1');
    // Another key has its own slots.
    assert.equal((await request(worker, { key: "k2" }).promise).status, 200);

    origin.finish("long");
    const answers = await Promise.all(long.map((p) => p.promise));
    assert.deepEqual(answers.map((a) => a.status), Array(MAX).fill(200));
    await until(async () => (await holdingSlots(worker)) === 0, "the slots are given back");
    const again = await request(worker).promise;
    assert.equal(again.status, 200);
    assert.equal(again.h("ratelimit"), `"in-flight";r=${MAX - 1}`, "every slot is free again but its own");
    assert.match(again.h("x-sluice-debug-stats"), new RegExp(`released=${MAX + 1}$`), "k2's slot and the three");
  } finally {
    await worker.dispose();
    await origin.close();
  }
});

test("an origin error and a dropped origin connection give the slot back too", async () => {
  const origin = await startOrigin();
  const worker = await startWorker({ config: config(), origin: origin.url });
  try {
    // The origin answers 500: the request passed, the slot comes back with the answer.
    const failing = await fill(worker, origin, "failing");
    assert.equal((await request(worker).promise).status, 429);
    origin.finish("failing", 500);
    assert.deepEqual((await Promise.all(failing.map((p) => p.promise))).map((a) => a.status), Array(MAX).fill(500));
    await until(async () => (await holdingSlots(worker)) === 0, "the slots of the 500s are given back");

    // The origin drops the connection: the worker answers 502 and gives the slot back.
    const dropped = await fill(worker, origin, "dropped");
    assert.equal((await request(worker).promise).status, 429);
    origin.reset("dropped");
    assert.deepEqual((await Promise.all(dropped.map((p) => p.promise))).map((a) => a.status), Array(MAX).fill(502));
    await until(async () => (await holdingSlots(worker)) === 0, "the slots of the 502s are given back");
    assert.equal((await request(worker).promise).h("ratelimit"), `"in-flight";r=${MAX - 1}`);
  } finally {
    await worker.dispose();
    await origin.close();
  }
});

test("a slot whose request never ends comes back after slot_ttl on the runtime's clock", async () => {
  // slot_ttl 1 s: buckets of 125 ms, a slot lives between 1 s and 1.125 s.
  const origin = await startOrigin();
  const worker = await startWorker({ config: config("1s"), origin: origin.url });
  try {
    const stuck = await fill(worker, origin, "stuck");
    const started = Date.now();
    assert.equal((await request(worker).promise).status, 429, "all slots taken");
    await new Promise((resolve) => setTimeout(resolve, 1200 - (Date.now() - started)));
    // The three are still in flight, but their slots have expired.
    assert.equal(origin.holding("stuck"), MAX);
    const fresh = request(worker, { hold: "fresh" });
    await until(() => origin.holding("fresh") === 1, "a new request is in flight");
    assert.equal(await holdingSlots(worker), MAX + 1, "the three stuck ones have not given theirs back");
    // The stuck ones end at last: their slots had expired, so their releases give back
    // nothing, and the new request still holds its slot (r = MAX - 2 with the next one).
    origin.finish("stuck");
    await Promise.all(stuck.map((p) => p.promise));
    await until(async () => (await holdingSlots(worker)) === 1, "the late releases are answered");
    const next = await request(worker).promise;
    assert.equal(next.status, 200);
    assert.equal(next.h("ratelimit"), `"in-flight";r=${MAX - 2}`);
    origin.finish("fresh");
    assert.equal((await fresh.promise).status, 200);
  } finally {
    await worker.dispose();
    await origin.close();
  }
});
