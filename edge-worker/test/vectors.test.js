// Every shared vector (vectors/*.json) through the real worker in workerd, with its limiter
// objects, the negative cache and a local origin: the same statuses, headers and bodies as
// the core (filters/policy/tests/vectors.rs) and the filter in the host
// (host-tests/tests/filter/vectors.rs). Each file gets a fresh runtime (fresh objects and
// isolate), as each runner starts every file with a fresh store.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { startWorker } from "./support/runtime.js";
import { startOrigin } from "./support/origin.js";
import { compare, loadVector, stepRequest, vectorFiles } from "./support/vectors.js";

test("every shared vector gives the same responses in workerd", async () => {
  const files = vectorFiles();
  assert.ok(files.length >= 15, `expected the vector set, found ${files.length} files`);
  const origin = await startOrigin();
  const failures = [];
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
      const worker = await startWorker({ config: vector.config, origin: origin.url });
      try {
        const error = await runVector(worker, vector);
        if (error) failures.push(`${name}: ${error}`);
      } finally {
        await worker.dispose();
      }
    }
  } finally {
    await origin.close();
  }
  assert.deepEqual(failures, [], `${failures.length} of ${files.length} vectors failed:\n${failures.join("\n")}`);
  console.log(`vectors: ${files.length} files agree in workerd`);
});

async function runVector(worker, vector) {
  for (const [index, step] of vector.steps.entries()) {
    for (let round = 1; round <= step.repeat; round++) {
      const { url, init } = stepRequest(step);
      const response = await worker.fetch(url, init);
      const body = await response.text();
      const differences = compare(response, body, step.expect);
      if (differences.length > 0) {
        const repeat = step.repeat > 1 ? `, repeat ${round} of ${step.repeat}` : "";
        return `steps[${index}] (at_ms ${step.atMs}${repeat}, ${step.request.method} ${step.request.path}): ${differences.join("; ")}`;
      }
    }
  }
  return null;
}
