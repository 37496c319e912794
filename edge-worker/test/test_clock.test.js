// A limiter object driven by the test clock (x-sluice-test-now-ms) decides, sets its alarm and
// cleans up by that clock alone: while the test clock stands still, real time passing recovers
// nothing, so the clean-up alarm never deletes a state that has not recovered at the test's
// time; once the test clock reaches a state's recovery time, the alarm deletes it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startWorker } from "./support/runtime.js";
import { startOrigin } from "./support/origin.js";

// One request per 200 ms, no burst: a request at 0 ms has recovered at 200 ms.
const config = {
  rules: [{ name: "pace", key: ["client_ip"], limit: { requests: 5, period: "1s", burst: 1 }, algorithm: "gcra" }],
};

async function send(worker, atMs) {
  const response = await worker.fetch("http://api.example.com/", {
    headers: { "x-sluice-test-peer": "203.0.113.7", "x-sluice-test-now-ms": String(atMs) },
  });
  await response.text();
  return {
    status: response.status,
    calls: response.headers.get("x-sluice-debug-object-calls"),
    ratelimit: response.headers.get("ratelimit"),
    retryAfter: response.headers.get("retry-after"),
  };
}

async function rows(worker, atMs) {
  const response = await worker.fetch("http://api.example.com/", {
    headers: {
      "x-sluice-test-peer": "203.0.113.7",
      "x-sluice-test-now-ms": String(atMs),
      "x-sluice-test-inspect": "rows",
    },
  });
  const [object] = JSON.parse(await response.text());
  return object;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test("real time passing while the test clock stands still recovers nothing", async () => {
  const origin = await startOrigin();
  const worker = await startWorker({ config, origin: origin.url });
  try {
    assert.equal((await send(worker, 0)).status, 200);
    // Three times the state's recovery time passes in real time; the test clock is still at 1.
    await sleep(600);
    assert.deepEqual(await rows(worker, 1), { rows: 1, in_memory: 1 }, "the state is still stored");
    const denied = await send(worker, 1);
    assert.deepEqual(denied, { status: 429, calls: "1", ratelimit: '"pace";r=0;t=1', retryAfter: "1" });
    assert.equal(origin.received.length, 1, "only the first request reached the origin");
  } finally {
    await worker.dispose();
    await origin.close();
  }
});

test("the clean-up deletes a state once the test clock reaches its recovery time", async () => {
  const origin = await startOrigin();
  const worker = await startWorker({ config, origin: origin.url });
  try {
    assert.equal((await send(worker, 0)).status, 200);
    await sleep(300);
    assert.deepEqual(await rows(worker, 199), { rows: 1, in_memory: 1 }, "1 ms before recovery");
    // At 200 ms the state has recovered: the object's alarm deletes it (it runs on its own).
    const deadline = Date.now() + 5000;
    let seen = await rows(worker, 200);
    while (seen.rows > 0 && Date.now() < deadline) {
      await sleep(50);
      seen = await rows(worker, 200);
    }
    assert.deepEqual(seen, { rows: 0, in_memory: 0 }, "recovered state is deleted");
    // Which is the same as the state the core would decide with.
    const next = await send(worker, 200);
    assert.deepEqual([next.status, next.ratelimit], [200, '"pace";r=0;t=1']);
  } finally {
    await worker.dispose();
    await origin.close();
  }
});
