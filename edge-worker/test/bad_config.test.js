// An invalid configuration answers every request with a 500 whose body is the message
// `sluice check` prints for it (the policy's own error), and logs it; nothing reaches the
// origin. The expected messages come from the policy crate itself when the suite runs under
// `cargo test` (SLUICE_EXPECTED_CONFIG_ERRORS); run alone, the documented examples are used.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { startWorker, waitForLog } from "./support/runtime.js";
import { startOrigin } from "./support/origin.js";

const fallback = [
  {
    config: JSON.stringify({
      rules: [{ name: "per-client", key: ["client_ip"], limit: { requests: 100, period: "5x" } }],
    }),
    message:
      'rule "per-client" (rules[0]): limit.period: "5x" is not a duration; use a number with ms, s, m, h or d, e.g. 30s',
  },
  {
    config: JSON.stringify({
      rules: [
        { name: "log", key: ["client_ip"], limit: { requests: 5, period: "1s" }, algorithm: "sliding_log", lease: { size: 2 } },
      ],
    }),
    message:
      'rule "log" (rules[0]): lease: sliding_log cannot be leased: it remembers the time of every request, so units ' +
      'granted now and spent later would expire early and admit more than the bound; use "algorithm": ' +
      '"sliding_window" (or gcra, fixed_window) or remove lease',
  },
];

const cases = process.env.SLUICE_EXPECTED_CONFIG_ERRORS
  ? JSON.parse(fs.readFileSync(process.env.SLUICE_EXPECTED_CONFIG_ERRORS, "utf8"))
  : fallback;

test("an invalid configuration answers 500 with the message of sluice check", async () => {
  assert.ok(cases.length > 0);
  const origin = await startOrigin();
  try {
    for (const { config, message } of cases) {
      const worker = await startWorker({ config, origin: origin.url });
      try {
        for (const path of ["/", "/healthz"]) {
          const response = await worker.fetch(`http://api.example.com${path}`);
          assert.equal(response.status, 500);
          assert.equal(await response.text(), `sluice: invalid configuration: ${message}\n`);
        }
        assert.ok(
          await waitForLog(worker, (l) => l.includes(`sluice: invalid configuration: ${message}`)),
          worker.logs.join(""),
        );
      } finally {
        await worker.dispose();
      }
    }
    assert.equal(origin.received.length, 0);
  } finally {
    await origin.close();
  }
});
