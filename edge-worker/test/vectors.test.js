// Every shared vector (vectors/*.json) through the real worker in workerd, with its limiter
// objects, the negative cache and a local origin: the same statuses, headers and bodies as
// the core (filters/policy/tests/vectors.rs) and the filter in the host
// (host-tests/tests/filter/vectors.rs). Each file gets a fresh runtime (fresh objects and
// isolate), as each runner starts every file with a fresh store.
// Then again through the leased path: every rule whose algorithm supports leases gets
// `lease: {size: 1}` (a lease of 1 holds nothing between requests, so it is exact), and every
// request is decided through lease calls, grants and returns instead of decides and refunds.
// Vectors that hold requests (delay rules) are left out: the worker does not hold requests.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { startWorker } from "./support/runtime.js";
import { startOrigin } from "./support/origin.js";
import {
  compare,
  compareUpstream,
  holdsRequests,
  loadVector,
  stepRequest,
  vectorFiles,
} from "./support/vectors.js";

/** The vector's configuration with a lease of 1 on every rule that can have one. */
function withLeases(config) {
  const copy = structuredClone(config);
  for (const rule of copy.rules ?? []) {
    // A slice is of one limit: not for a sliding log, nor for a limit chosen by the caller.
    const leasable = (rule.algorithm ?? "gcra") !== "sliding_log" && !rule.tier && !rule.overrides;
    if (leasable) rule.lease = { size: 1, lifetime: "10ms" };
  }
  return copy;
}

for (const [label, leased] of [
  ["", false],
  [" through leases of size 1", true],
]) {
  test(`every shared vector gives the same responses in workerd${label}`, async () => {
    const files = vectorFiles();
    assert.ok(files.length >= 15, `expected the vector set, found ${files.length} files`);
    const origin = await startOrigin();
    const failures = [];
    let leasesTaken = 0;
    let held = 0;
    try {
      for (const file of files) {
        const name = path.basename(file);
        let vector;
        try {
          vector = loadVector(file);
        } catch (error) {
          failures.push(`${name}: ${error.message}`);
          continue;
        }
        if (holdsRequests(vector)) {
          held += 1;
          continue;
        }
        const config = leased ? withLeases(vector.config) : vector.config;
        const worker = await startWorker({ config, origin: origin.url });
        try {
          const { error, acquired } = await runVector(worker, vector, origin);
          if (error) failures.push(`${name}: ${error}`);
          leasesTaken += acquired;
        } finally {
          await worker.dispose();
        }
      }
    } finally {
      await origin.close();
    }
    assert.deepEqual(failures, [], `${failures.length} of ${files.length} vectors failed:\n${failures.join("\n")}`);
    if (leased) assert.ok(leasesTaken > 100, `only ${leasesTaken} slices were granted: the leased path was not taken`);
    else assert.equal(leasesTaken, 0);
    console.log(
      `vectors: ${files.length - held} files agree in workerd${label}${leased ? ` (${leasesTaken} slices granted)` : ""}; ${held} that hold requests left out`,
    );
  });
}

/** The first difference from the vector (`error`, null if none) and the slices granted. */
async function runVector(worker, vector, origin) {
  let acquired = 0;
  for (const [index, step] of vector.steps.entries()) {
    for (let round = 1; round <= step.repeat; round++) {
      const { url, init } = stepRequest(step);
      const before = origin.received.length;
      const response = await worker.fetch(url, init);
      const body = await response.text();
      const received = origin.received.length > before ? origin.received.at(-1) : null;
      const stats = /lease_acquired=(\d+)/.exec(response.headers.get("x-sluice-debug-stats") ?? "");
      if (stats) acquired = Number(stats[1]);
      const differences = [...compare(response, body, step.expect), ...compareUpstream(received, step.expect)];
      if (differences.length > 0) {
        const repeat = step.repeat > 1 ? `, repeat ${round} of ${step.repeat}` : "";
        const error = `steps[${index}] (at_ms ${step.atMs}${repeat}, ${step.request.method} ${step.request.path}): ${differences.join("; ")}`;
        return { error, acquired };
      }
    }
  }
  return { error: null, acquired };
}
