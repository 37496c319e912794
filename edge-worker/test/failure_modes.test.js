// When a limiter object fails (an error answer, injected) or does not answer in time
// (SLUICE_OBJECT_TIMEOUT_MS, with an injected delay), each rule's failure mode applies:
// `open` passes without counting, `closed` denies with Retry-After: 1. Each failure is counted
// and logged with the rule and what was decided.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startWorker, waitForLog } from "./support/runtime.js";
import { startOrigin } from "./support/origin.js";

function rule(name, failureMode, key) {
  return {
    name,
    key,
    limit: { requests: 5, period: "1m" },
    algorithm: "fixed_window",
    failure_mode: failureMode,
  };
}

const openOnly = { rules: [rule("lenient", "open", ["client_ip"])] };
const openAndClosed = {
  rules: [rule("lenient", "open", ["client_ip"]), rule("strict", "closed", [{ const: "all" }])],
};

async function send(worker, extra = {}) {
  const response = await worker.fetch("http://api.example.com/", {
    headers: { "x-sluice-test-peer": "203.0.113.7", "x-sluice-test-now-ms": "0", ...extra },
  });
  return { response, body: await response.text() };
}

test("an injected object failure follows each rule's failure mode", async () => {
  const origin = await startOrigin();
  try {
    await failOpen(origin);
    await failClosed(origin);
  } finally {
    await origin.close();
  }
});

async function failOpen(origin) {
  const worker = await startWorker({ config: openOnly, origin: origin.url });
  try {
    const { response } = await send(worker, { "x-sluice-test-object-fails": "1" });
    assert.equal(response.status, 200, "failing open passes");
    assert.equal(response.headers.get("ratelimit"), null, "a rule that failed open has no state to show");
    assert.equal(response.headers.get("x-sluice-debug-object-failures"), "1");
    assert.equal(origin.received.length, 1);
    assert.ok(
      await waitForLog(worker, (l) =>
        l.includes('sluice: rule "lenient": counter store failed for key client_ip=203.0.113.7') &&
        l.includes("the limiter object answered 503") &&
        l.includes("failing open, the rule did not count the request"),
      ),
      worker.logs.join(""),
    );
    // It counted nothing: the next five requests (store back) all pass.
    for (let i = 0; i < 5; i++) assert.equal((await send(worker)).response.status, 200);
    assert.equal((await send(worker)).response.status, 429);
  } finally {
    await worker.dispose();
  }
}

async function failClosed(origin) {
  const worker = await startWorker({ config: openAndClosed, origin: origin.url });
  try {
    const before = origin.received.length;
    const { response, body } = await send(worker, { "x-sluice-test-object-fails": "1" });
    assert.equal(response.status, 429, "failing closed denies");
    assert.equal(response.headers.get("retry-after"), "1");
    assert.equal(body, "rate limit exceeded\n");
    assert.equal(response.headers.get("x-sluice-debug-object-failures"), "2", "both objects failed");
    assert.equal(origin.received.length, before, "a closed failure never reaches the origin");
    assert.ok(
      await waitForLog(worker, (l) => l.includes('rule "strict": counter store failed') && l.includes("failing closed, the request was denied")),
      worker.logs.join(""),
    );
  } finally {
    await worker.dispose();
  }
}

test("an object that does not answer in time follows the failure mode", async () => {
  const origin = await startOrigin();
  const worker = await startWorker({ config: openAndClosed, origin: origin.url, timeoutMs: 150 });
  try {
    // A first request starts the isolate and the objects, so that the time measured below is
    // the call's alone, even on a loaded machine.
    assert.equal((await send(worker)).response.status, 200);
    const started = Date.now();
    const { response } = await send(worker, { "x-sluice-test-object-delay-ms": "1500" });
    const elapsed = Date.now() - started;
    assert.equal(response.status, 429, "the closed rule denies on timeout");
    assert.equal(response.headers.get("retry-after"), "1");
    assert.ok(elapsed < 1400, `answered after the timeout, not the delay (${elapsed} ms)`);
    assert.ok(
      await waitForLog(worker, (l) => l.includes("did not answer within 150 ms")),
      worker.logs.join(""),
    );
    // Without the delay the objects answer again.
    assert.equal((await send(worker)).response.status, 200);
  } finally {
    await worker.dispose();
    await origin.close();
  }
});
