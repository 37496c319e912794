// A client's count lives in the limiter object's SQLite storage: after the runtime is
// disposed and started again on the same storage (a restart or eviction of the object, and a
// fresh isolate with an empty negative cache), the client is still limited.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startWorker } from "./support/runtime.js";
import { startOrigin } from "./support/origin.js";

const config = {
  rules: [
    {
      name: "per-client",
      key: ["client_ip"],
      limit: { requests: 3, period: "1h" },
      algorithm: "fixed_window",
    },
  ],
};

function request(worker, atMs, peer = "203.0.113.7") {
  return worker.fetch("http://api.example.com/", {
    headers: { "x-sluice-test-peer": peer, "x-sluice-test-now-ms": String(atMs) },
  });
}

test("state survives a restart of the runtime", async () => {
  const persist = fs.mkdtempSync(path.join(os.tmpdir(), "sluice-do-"));
  const origin = await startOrigin();
  try {
    let worker = await startWorker({ config, origin: origin.url, persist });
    try {
      for (let i = 0; i < 3; i++) assert.equal((await request(worker, 1000 + i)).status, 200);
      const denied = await request(worker, 1010);
      assert.equal(denied.status, 429);
      await denied.text();
    } finally {
      await worker.dispose();
    }

    worker = await startWorker({ config, origin: origin.url, persist });
    try {
      const after = await request(worker, 2000);
      assert.equal(after.status, 429, "the restarted object still holds the count");
      // Decided by the object (one call), not by an isolate's memory.
      assert.equal(after.headers.get("x-sluice-debug-negative-cache"), "miss");
      assert.equal(after.headers.get("x-sluice-debug-object-calls"), "1");
      assert.equal(after.headers.get("ratelimit"), '"per-client";r=0;t=3598');
      await after.text();
      // Another client was never counted.
      assert.equal((await request(worker, 2000, "198.51.100.1")).status, 200);
      // The next window (at_ms 3 600 000) is whole again.
      assert.equal((await request(worker, 3_600_000)).status, 200);
    } finally {
      await worker.dispose();
    }
  } finally {
    await origin.close();
    fs.rmSync(persist, { recursive: true, force: true });
  }
});
