// Configuration features end to end through the worker, beyond what the shared vectors
// check: the bundled sluice.json (used when SLUICE_CONFIG is unset) with exemptions, CORS
// preflight, a secret API-key rule with a cost header, and both header styles; the variable
// given as a JSON object; shadow mode's log line; a custom denial. Every key kind, match,
// algorithm and header style is also run by the vectors (vectors.test.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { startWorker, waitForLog } from "./support/runtime.js";
import { startOrigin } from "./support/origin.js";

async function send(worker, path, { method = "GET", headers = {} } = {}) {
  const response = await worker.fetch(`http://api.example.com${path}`, {
    method,
    headers: { "x-sluice-test-peer": "203.0.113.7:41000", "x-sluice-test-now-ms": "0", ...headers },
  });
  const body = await response.text();
  return { response, body, status: response.status, h: (n) => response.headers.get(n) };
}

test("the bundled configuration applies when SLUICE_CONFIG is unset", async () => {
  const origin = await startOrigin();
  const worker = await startWorker({ origin: origin.url });
  try {
    // Exempt paths and CORS preflight: passed unchecked, no headers.
    for (const path of ["/healthz", "/readyz", "/metrics/prometheus"]) {
      const r = await send(worker, path);
      assert.equal(r.status, 200);
      assert.equal(r.h("ratelimit-policy"), null, path);
    }
    const preflight = await send(worker, "/api/items", {
      method: "OPTIONS",
      headers: { origin: "https://app.example.com", "access-control-request-method": "POST" },
    });
    assert.equal(preflight.h("ratelimit-policy"), null);

    // per-client: GCRA 5 per 10 s, both header styles. api-key rule: skipped without a key.
    for (let i = 0; i < 5; i++) {
      const r = await send(worker, "/");
      assert.equal(r.status, 200);
      assert.equal(r.h("ratelimit-policy"), '"per-client";q=5;w=10');
      assert.equal(r.h("x-ratelimit-remaining"), String(4 - i));
    }
    const denied = await send(worker, "/");
    assert.equal(denied.status, 429);
    assert.equal(denied.h("retry-after"), "2");
    assert.equal(denied.h("x-ratelimit-limit"), "5");
    assert.equal(denied.body, "rate limit exceeded\n");

    // api-key (another client): fixed window 1000 per hour, cost from x-request-cost (max 100).
    const key = { "x-sluice-test-peer": "198.51.100.1", "x-api-key": "k-secret-1" };
    const costly = await send(worker, "/api/items", { headers: { ...key, "x-request-cost": "250" } });
    assert.equal(costly.status, 200);
    assert.equal(costly.h("ratelimit"), '"per-client";r=4;t=2, "api-key";r=900;t=3600');
    const cheap = await send(worker, "/api/items", { headers: key });
    assert.equal(cheap.h("ratelimit"), '"per-client";r=3;t=4, "api-key";r=899;t=3600');
    // Exempt and denied requests never reached the origin.
    assert.equal(origin.received.length, 3 + 1 + 5 + 2);
  } finally {
    await worker.dispose();
    await origin.close();
  }
});

test("SLUICE_CONFIG may be a JSON object in [vars]", async () => {
  const origin = await startOrigin();
  const config = {
    rules: [{ name: "obj", key: ["client_ip"], limit: { requests: 1, period: "1m" } }],
  };
  const worker = await startWorker({ config, configAsObject: true, origin: origin.url });
  try {
    assert.equal((await send(worker, "/")).h("ratelimit-policy"), '"obj";q=1;w=60');
    assert.equal((await send(worker, "/")).status, 429);
  } finally {
    await worker.dispose();
    await origin.close();
  }
});

test("a shadow rule never denies and logs what it would have done, secrets fingerprinted", async () => {
  const origin = await startOrigin();
  const config = {
    rules: [
      {
        name: "trial",
        key: [{ header: "x-api-key", secret: true }],
        limit: { requests: 1, period: "1m" },
        algorithm: "fixed_window",
        mode: "shadow",
      },
    ],
  };
  const worker = await startWorker({ config, origin: origin.url });
  try {
    for (let i = 0; i < 3; i++) {
      const r = await send(worker, "/", { headers: { "x-api-key": "super-secret" } });
      assert.equal(r.status, 200);
      assert.equal(r.h("ratelimit-policy"), null, "shadow rules add no headers");
      assert.equal(r.h("x-sluice-debug-object-calls"), "1", "shadow rules always ask the object");
    }
    assert.ok(
      await waitForLog(worker, (l) => l.includes('sluice: rule "trial" (shadow) would deny key') && l.includes("the request passed")),
      worker.logs.join(""),
    );
    assert.ok(!worker.logs.join("").includes("super-secret"), "the secret is not logged");
    assert.equal(origin.received.length, 3);
  } finally {
    await worker.dispose();
    await origin.close();
  }
});

test("a custom denial: status, body, content type, legacy headers", async () => {
  const origin = await startOrigin();
  const config = {
    response: {
      status: 503,
      body: '{"error":"slow down"}',
      content_type: "application/json",
      headers: "legacy",
    },
    rules: [{ name: "tiny", key: ["client_ip"], limit: { requests: 1, period: "30s" }, algorithm: "fixed_window" }],
  };
  const worker = await startWorker({ config, origin: origin.url });
  try {
    assert.equal((await send(worker, "/")).h("x-ratelimit-remaining"), "0");
    const denied = await send(worker, "/");
    assert.equal(denied.status, 503);
    assert.equal(denied.body, '{"error":"slow down"}');
    assert.equal(denied.h("content-type"), "application/json");
    assert.equal(denied.h("retry-after"), "30");
    assert.equal(denied.h("x-ratelimit-reset"), "30");
    assert.equal(denied.h("ratelimit"), null);
  } finally {
    await worker.dispose();
    await origin.close();
  }
});
