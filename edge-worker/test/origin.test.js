// The origin behind the worker receives exactly the allowed requests, unchanged (method,
// path, query, body, headers, less the test hooks' own), and its response comes back with
// its own headers and the rate-limit headers added.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startWorker } from "./support/runtime.js";
import { startOrigin } from "./support/origin.js";

const config = {
  response: { headers: "both" },
  rules: [
    {
      name: "per-client",
      key: ["client_ip"],
      limit: { requests: 2, period: "1m" },
      algorithm: "fixed_window",
    },
  ],
};

test("an origin behind the worker receives only allowed requests", async () => {
  const origin = await startOrigin();
  const worker = await startWorker({ config, origin: origin.url });
  try {
    const statuses = [];
    for (let i = 0; i < 5; i++) {
      const response = await worker.fetch(`http://api.example.com/items/${i}?page=${i}`, {
        method: "POST",
        headers: {
          "x-sluice-test-peer": "203.0.113.7",
          "x-sluice-test-now-ms": "0",
          "content-type": "application/json",
          "x-request-id": `r${i}`,
        },
        body: JSON.stringify({ i }),
      });
      const body = await response.text();
      statuses.push(response.status);
      if (response.status === 200) {
        assert.equal(response.headers.get("x-origin"), "yes");
        assert.equal(body, `origin saw POST /items/${i}?page=${i}\n`);
        assert.equal(response.headers.get("ratelimit-policy"), '"per-client";q=2;w=60');
        assert.equal(response.headers.get("x-ratelimit-remaining"), String(1 - i));
      } else {
        assert.equal(response.headers.get("x-origin"), null, "a denial is answered by the worker");
        assert.equal(body, "rate limit exceeded\n");
      }
    }
    assert.deepEqual(statuses, [200, 200, 429, 429, 429]);
    assert.equal(origin.received.length, 2);
    for (const [i, seen] of origin.received.entries()) {
      assert.equal(seen.method, "POST");
      assert.equal(seen.url, `/items/${i}?page=${i}`);
      assert.equal(seen.body, JSON.stringify({ i }));
      assert.equal(seen.headers["x-request-id"], `r${i}`);
      assert.equal(seen.headers["content-type"], "application/json");
      const leaked = Object.keys(seen.headers).filter((h) => h.startsWith("x-sluice-test-"));
      assert.deepEqual(leaked, [], "test hook headers are not forwarded");
    }
  } finally {
    await worker.dispose();
    await origin.close();
  }
});
