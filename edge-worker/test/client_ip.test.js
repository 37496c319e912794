// As deployed (no test hooks): the client is the address in CF-Connecting-IP, which
// Cloudflare sets; `x-sluice-test-*` headers are ordinary headers, ignored by sluice and passed
// to the origin; no debug header is added.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startWorker } from "./support/runtime.js";
import { startOrigin } from "./support/origin.js";

const config = {
  rules: [
    { name: "per-client", key: ["client_ip"], limit: { requests: 1, period: "1h" }, algorithm: "fixed_window" },
  ],
};

test("without the test hooks the client is CF-Connecting-IP and test headers do nothing", async () => {
  const origin = await startOrigin();
  const worker = await startWorker({ config, origin: origin.url, hooks: false });
  try {
    const send = async (headers) => {
      const response = await worker.fetch("http://api.example.com/", { headers });
      await response.text();
      return response;
    };
    const first = await send({ "cf-connecting-ip": "203.0.113.7" });
    assert.equal(first.status, 200);
    assert.equal(first.headers.get("x-sluice-debug-object-calls"), null);
    // The same client, trying to pose as another peer and to fail the store: still limited.
    const second = await send({
      "cf-connecting-ip": "203.0.113.7",
      "x-sluice-test-peer": "198.51.100.1",
      "x-sluice-test-object-fails": "1",
      "x-sluice-test-now-ms": "999999999",
    });
    assert.equal(second.status, 429);
    assert.equal(second.headers.get("x-sluice-debug-negative-cache"), null);
    // Another address is another client.
    assert.equal((await send({ "cf-connecting-ip": "2001:db8::1" })).status, 200);
    // IPv6 clients are grouped by /64.
    assert.equal((await send({ "cf-connecting-ip": "2001:db8::2" })).status, 429);
    assert.equal(origin.received.length, 2);
    const passedOn = await send({ "cf-connecting-ip": "192.0.2.1", "x-sluice-test-peer": "x" });
    assert.equal(passedOn.status, 200);
    assert.equal(origin.received.at(-1).headers["x-sluice-test-peer"], "x");
  } finally {
    await worker.dispose();
    await origin.close();
  }
});
