// The limiter object's alarm deletes states that have fully recovered, so storage holds only
// keys that are still limited. Runs on the runtime's real clock (no test clock).
import { test } from "node:test";
import assert from "node:assert/strict";
import { startWorker } from "./support/runtime.js";
import { startOrigin } from "./support/origin.js";

const config = {
  rules: [
    { name: "fast", key: ["client_ip"], limit: { requests: 2, period: "2s" }, algorithm: "gcra" },
    { name: "window", key: ["client_ip"], limit: { requests: 5, period: "1s" }, algorithm: "sliding_window" },
  ],
};

async function rows(worker) {
  const response = await worker.fetch("http://api.example.com/", {
    headers: { "x-sluice-test-peer": "203.0.113.7", "x-sluice-test-inspect": "rows" },
  });
  const [object] = JSON.parse(await response.text());
  return object;
}

test("an alarm removes fully recovered state from storage", async () => {
  const origin = await startOrigin();
  const worker = await startWorker({ config, origin: origin.url });
  try {
    const response = await worker.fetch("http://api.example.com/", {
      headers: { "x-sluice-test-peer": "203.0.113.7" },
    });
    assert.equal(response.status, 200);
    await response.text();
    assert.deepEqual(await rows(worker), { rows: 2, in_memory: 2 });
    // GCRA is whole again after 1 s (long enough for the rows to be read first on a busy
    // machine); the sliding window after its previous window has rolled out (at most 2
    // periods).
    const deadline = Date.now() + 5000;
    let seen = await rows(worker);
    while (seen.rows > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      seen = await rows(worker);
    }
    assert.deepEqual(seen, { rows: 0, in_memory: 0 }, "recovered state is deleted");
  } finally {
    await worker.dispose();
    await origin.close();
  }
});
