// Soft limits in the worker, beyond the shared soft_*.json vectors: the warning header reaches
// the origin and the client (the configured name, one line, a forged client value replaced or
// dropped), a soft rule's RateLimit headers, the "marked" isolate counter and the log line; a
// configuration that cannot mark leaves a client's header of that name alone.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startWorker, waitForLog } from "./support/runtime.js";
import { startOrigin } from "./support/origin.js";

const CONFIG = {
  response: { warning_header: "x-quota-warning" },
  rules: [
    { name: "hard", key: ["client_ip"], algorithm: "fixed_window", limit: { requests: 10, period: "1m" }, warn_at: { remaining: 7 } },
    { name: "soft", key: ["client_ip"], algorithm: "fixed_window", limit: { requests: 1, period: "1m" }, mode: "soft" },
  ],
};

async function send(worker, headers = {}) {
  const response = await worker.fetch("http://api.example.com/items", {
    headers: { "x-sluice-test-peer": "203.0.113.7:41000", "x-sluice-test-now-ms": "0", ...headers },
  });
  const body = await response.text();
  return { status: response.status, body, h: (n) => response.headers.get(n) };
}

test("marked requests carry the warning to the origin and the client; unmarked ones carry none", async () => {
  const origin = await startOrigin();
  const worker = await startWorker({ config: CONFIG, origin: origin.url });
  try {
    const first = await send(worker, { "x-quota-warning": "forged" });
    assert.equal(first.status, 200);
    assert.equal(first.h("x-quota-warning"), null, "9 and 0 left: not marked");
    assert.equal(first.h("ratelimit"), '"hard";r=9;t=60, "soft";r=0;t=60');
    assert.equal(origin.received.at(-1).distinct["x-quota-warning"], undefined, "the forged header is dropped");

    const second = await send(worker, { "x-quota-warning": "forged" });
    const mark = '"soft";reason=exceeded;r=0';
    assert.equal(second.status, 200, "a soft rule never denies");
    assert.equal(second.h("x-quota-warning"), mark);
    assert.equal(second.h("ratelimit"), '"hard";r=8;t=60, "soft";r=0;t=60');
    assert.deepEqual(origin.received.at(-1).distinct["x-quota-warning"], [mark], "sluice's mark replaces the client's");
    assert.match(second.h("x-sluice-debug-stats"), /marked=1\b/);

    const third = await send(worker);
    const both = '"hard";reason=low;r=7, "soft";reason=exceeded;r=0';
    assert.equal(third.h("x-quota-warning"), both, "one item per marking rule, in rule order");
    assert.deepEqual(origin.received.at(-1).distinct["x-quota-warning"], [both]);
    assert.match(third.h("x-sluice-debug-stats"), /marked=3\b/);
    assert.ok(
      await waitForLog(worker, (l) => l.includes('sluice: rule "soft" (soft) is over its limit for key client_ip=203.0.113.7') && l.includes("the request passed, marked")),
      worker.logs.join(""),
    );
    assert.equal(origin.received.length, 3);
  } finally {
    await worker.dispose();
    await origin.close();
  }
});

test("without soft limits a client's header of the warning's name passes untouched", async () => {
  const origin = await startOrigin();
  const config = { rules: [{ name: "hard", key: ["client_ip"], limit: { requests: 1, period: "1m" } }] };
  const worker = await startWorker({ config, origin: origin.url });
  try {
    const r = await send(worker, { "ratelimit-warning": "from the client" });
    assert.equal(r.status, 200);
    assert.equal(r.h("ratelimit-warning"), null);
    assert.deepEqual(origin.received.at(-1).distinct["ratelimit-warning"], ["from the client"]);
  } finally {
    await worker.dispose();
    await origin.close();
  }
});
