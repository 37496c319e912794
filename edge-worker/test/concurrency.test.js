// 50 requests for one key sent at once: the key's limiter object decides them one at a time,
// so exactly the limit passes, and only those reach the origin.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startWorker } from "./support/runtime.js";
import { startOrigin } from "./support/origin.js";

const LIMIT = 10;
const config = {
  rules: [
    {
      name: "per-client",
      key: ["client_ip"],
      limit: { requests: LIMIT, period: "1m" },
      algorithm: "fixed_window",
    },
  ],
};

for (const algorithm of ["fixed_window", "gcra", "sliding_window", "sliding_log"]) {
  test(`50 concurrent requests for one key admit exactly the limit (${algorithm})`, async () => {
    const origin = await startOrigin();
    const rule = { ...config.rules[0], algorithm };
    const worker = await startWorker({ config: { rules: [rule] }, origin: origin.url });
    try {
      const responses = await Promise.all(
        Array.from({ length: 50 }, () =>
          worker.fetch("http://api.example.com/items", {
            headers: { "x-sluice-test-peer": "203.0.113.7", "x-sluice-test-now-ms": "1000" },
          }),
        ),
      );
      const statuses = responses.map((r) => r.status);
      await Promise.all(responses.map((r) => r.arrayBuffer()));
      assert.equal(statuses.filter((s) => s === 200).length, LIMIT, `statuses: ${statuses}`);
      assert.equal(statuses.filter((s) => s === 429).length, 50 - LIMIT);
      assert.equal(origin.received.length, LIMIT);
    } finally {
      await worker.dispose();
      await origin.close();
    }
  });
}
