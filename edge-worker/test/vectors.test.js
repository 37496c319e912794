// Every shared vector (vectors/*.json) through the real worker in workerd, with its limiter
// objects, the negative cache and a local origin: the same statuses, headers and bodies as
// the core (filters/policy/tests/vectors.rs) and the filter in the host
// (host-tests/tests/filter/vectors.rs). Each file gets a fresh runtime (fresh objects and
// isolate), as each runner starts every file with a fresh store.
// Then again through the leased path: every rule whose algorithm supports leases gets
// `lease: {size: 1}` (a lease of 1 holds nothing between requests, so it is exact), and every
// request is decided through lease calls, grants and returns instead of decides and refunds.
// Vectors that hold requests (delay rules) run in the first pass only: a delay rule cannot
// have a lease.
//
// Streams in flight (vectors/README.md, "Streams in flight"): the local origin holds the answer
// of a `hold_upstream` step until its end step; after every request that ends, the runner waits
// (`x-sluice-test-inspect: held`, `holding_slots`) until the worker has given its concurrency
// slots back, so the next step sees them free, as the proxy's next request would.
//
// Held requests (vectors/README.md, "Held requests") run on the isolate's test clock: a held
// step's request stays in flight while later steps run, and the runner moves the clock
// (`x-sluice-test-inspect: held`, which also reports what the isolate holds) to one
// millisecond before each release, where the request must still be held, then to the release,
// where it must go on and reach the origin. So each hold is measured on the test clock to the
// millisecond: released at exactly `at_ms + held_ms`, as the host's fake clock measures it.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { startWorker } from "./support/runtime.js";
import { startOrigin } from "./support/origin.js";
import {
  compare,
  compareUpstream,
  hasStreams,
  holdsRequests,
  loadVector,
  stepRequest,
  vectorFiles,
} from "./support/vectors.js";

// Streams in flight ended by the runner, over all files of a pass.
let streamsEnded = 0;

/** The vector's configuration with a lease of 1 on every rule that can have one. */
function withLeases(config) {
  const copy = structuredClone(config);
  for (const rule of copy.rules ?? []) {
    // A slice is of one limit: not for a sliding log, nor for a limit chosen by the caller,
    // nor for concurrency slots (given back when a request ends, not spent).
    const leasable =
      (rule.algorithm ?? "gcra") !== "sliding_log" && !rule.tier && !rule.overrides && !rule.concurrency;
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
    streamsEnded = 0;
    const failures = [];
    let leasesTaken = 0;
    let held = 0;
    let holdsMeasured = 0;
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
        if (leased && holdsRequests(vector)) {
          held += 1;
          continue;
        }
        const config = leased ? withLeases(vector.config) : vector.config;
        const worker = await startWorker({ config, origin: origin.url });
        try {
          const { error, acquired, released } = await runVector(worker, vector, origin);
          if (error) failures.push(`${name}: ${error}`);
          leasesTaken += acquired;
          holdsMeasured += released;
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
    assert.ok(streamsEnded >= 7, `only ${streamsEnded} streams in flight were ended: the concurrency vectors did not run`);
    if (!leased) assert.ok(holdsMeasured >= 10, `only ${holdsMeasured} holds were measured: the delay vectors did not hold`);
    console.log(
      `vectors: ${files.length - held} files agree in workerd${label}${leased ? ` (${leasesTaken} slices granted` : ` (${holdsMeasured} holds measured to the millisecond`}, ${streamsEnded} streams in flight ended)` +
        (leased ? `; ${held} that hold requests left out (a delay rule has no lease)` : ""),
    );
  });
}

/**
 * The first difference from the vector (`error`, null if none), the slices granted and the
 * held requests released.
 */
async function runVector(worker, vector, origin) {
  const holding = holdsRequests(vector);
  const released = { count: 0 };
  // Requests held and not yet released: { label, release (vector ms), pending, expect }.
  const held = [];
  // Streams in flight (`hold_upstream`) by id: { label, pending, expect, client, slots }.
  const streams = hasStreams(vector) ? new Map() : null;
  let acquired = 0;
  for (const [index, step] of vector.steps.entries()) {
    if (step.end !== undefined) {
      const error = await endStream(worker, origin, streams, step, `steps[${index}] (at_ms ${step.atMs}, end ${step.end} by ${step.how})`);
      if (error) return { error, acquired, released: released.count };
      continue;
    }
    for (let round = 1; round <= step.repeat; round++) {
      const repeat = step.repeat > 1 ? `, repeat ${round} of ${step.repeat}` : "";
      const label = `steps[${index}] (at_ms ${step.atMs}${repeat}, ${step.request.method} ${step.request.path})`;
      if (holding) {
        const error = await releaseUntil(worker, origin, held, step.atMs, released);
        if (error) return { error, acquired, released: released.count };
      }
      const { url, init } = stepRequest(step);
      const before = origin.received.length;
      if (step.holdUpstream) {
        const error = await beginStream(worker, origin, streams, step, label, url, init);
        if (error) return { error, acquired, released: released.count };
        continue;
      }
      const pending = send(worker, url, init);
      if (holding) {
        const report = await heldOrAnswered(worker, pending, held.length, step.atMs);
        const release = step.atMs + step.expect.heldMs;
        if (report && step.expect.heldMs === 0) {
          return { error: `${label}: held until at_ms ${report.held.join(", ")}, expected to go on at once`, acquired, released: released.count };
        }
        if (step.expect.heldMs > 0) {
          if (!report) {
            const { response } = await pending.promise;
            return { error: `${label}: expected held ${step.expect.heldMs} ms, but answered ${response.status} at once`, acquired, released: released.count };
          }
          held.push({ label, release, pending, expect: step.expect });
          const expected = held.map((h) => h.release).sort((a, b) => a - b);
          if (JSON.stringify(report.held) !== JSON.stringify(expected)) {
            return { error: `${label}: the isolate holds requests until at_ms ${report.held.join(", ")}, expected ${expected.join(", ")}`, acquired, released: released.count };
          }
          continue;
        }
      }
      const { response, body } = await pending.promise;
      const received = origin.received.length > before ? origin.received.at(-1) : null;
      const stats = /lease_acquired=(\d+)/.exec(response.headers.get("x-sluice-debug-stats") ?? "");
      if (stats) acquired = Number(stats[1]);
      const differences = [...compare(response, body, step.expect), ...compareUpstream(received, step.expect)];
      if (differences.length > 0) return { error: `${label}: ${differences.join("; ")}`, acquired, released: released.count };
      if (streams) {
        // The request has ended: its slots go back before the next step.
        const error = await slotsSettle(worker, streams, step.atMs, label);
        if (error) return { error, acquired, released: released.count };
      }
    }
  }
  const error = await releaseUntil(worker, origin, held, Infinity, released);
  return { error, acquired, released: released.count };
}

/**
 * Sends a step whose upstream holds its answer (`x-origin-hold`), and waits until it has
 * reached the origin; records it in `streams` with the slots it holds.
 */
async function beginStream(worker, origin, streams, step, label, url, init) {
  const before = (await tick(worker, step.atMs)).holding_slots;
  const client = new AbortController();
  const pending = send(worker, url, { ...init, signal: client.signal });
  pending.promise.catch(() => {});
  const deadline = Date.now() + 5000;
  while (origin.holding(step.id) === 0) {
    if (pending.settled) {
      const { response } = await pending.promise;
      return `${label}: expected to reach the upstream and stay in flight, but answered ${response.status}`;
    }
    if (Date.now() > deadline) return `${label}: did not reach the upstream within 5 s`;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  const slots = (await tick(worker, step.atMs)).holding_slots - before;
  streams.set(step.id, { label, pending, expect: step.expect, client, slots });
  return null;
}

/**
 * Ends a stream in flight as the end step says: the upstream answers (`response`, the client's
 * response then compared with the step's `expect`), drops the connection (`reset`: the worker
 * answers 502), or the client goes away (`client_closed`; local workerd never tells the worker,
 * whose forward ends when the upstream then answers). Then its slots must be given back.
 */
async function endStream(worker, origin, streams, step, label) {
  const stream = streams.get(step.end);
  streams.delete(step.end);
  streamsEnded += 1;
  await tick(worker, step.atMs);
  if (step.how === "response") {
    origin.finish(step.end);
    const { response, body } = await stream.pending.promise;
    const differences = compare(response, body, stream.expect);
    if (differences.length > 0) return `${stream.label}, ended at at_ms ${step.atMs}: ${differences.join("; ")}`;
  } else if (step.how === "reset") {
    origin.reset(step.end);
    const { response } = await stream.pending.promise;
    if (response.status !== 502) return `${label}: expected the worker's 502, got ${response.status}`;
  } else {
    stream.client.abort();
    await stream.pending.promise.then(
      () => assert.fail("the aborted request was answered"),
      () => {},
    );
    origin.finish(step.end);
  }
  return slotsSettle(worker, streams, step.atMs, label);
}

/**
 * Waits until the isolate holds concurrency slots for exactly the streams still in flight:
 * every other request's slots have been given back. The first difference, or null.
 */
async function slotsSettle(worker, streams, atMs, label) {
  const expected = [...streams.values()].reduce((sum, stream) => sum + stream.slots, 0);
  const deadline = Date.now() + 5000;
  let report = await tick(worker, atMs);
  while (report.holding_slots !== expected) {
    if (Date.now() > deadline) {
      return `${label}: ${report.holding_slots} requests still hold concurrency slots, expected ${expected}`;
    }
    await new Promise((resolve) => setTimeout(resolve, 2));
    report = await tick(worker, atMs);
  }
  return null;
}

/** Sends a request; `settled` says whether its answer has come. */
function send(worker, url, init) {
  const pending = { settled: false };
  pending.promise = worker.fetch(url, init).then(async (response) => {
    const body = await response.text();
    pending.settled = true;
    return { response, body };
  });
  return pending;
}

/** Moves the isolate's test clock to `atMs` (never back) and reports what it holds. */
async function tick(worker, atMs) {
  const response = await worker.fetch("http://sluice.test/", {
    headers: { "x-sluice-test-now-ms": String(atMs), "x-sluice-test-inspect": "held" },
  });
  return response.json();
}

/**
 * Waits until the request `pending` is answered (null) or the isolate holds one more request
 * than the `alreadyHeld` ones (its report).
 */
async function heldOrAnswered(worker, pending, alreadyHeld, atMs) {
  for (;;) {
    if (pending.settled) return null;
    const report = await tick(worker, atMs);
    if (report.held.length > alreadyHeld) return report;
    if (pending.settled) return null;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/**
 * Releases the held requests due by `untilMs`, earliest first: at one millisecond before each
 * release the request is still held and has not reached the origin; at the release it goes on,
 * reaches the origin and is answered as its step expects. The first difference, or null.
 */
async function releaseUntil(worker, origin, held, untilMs, released) {
  while (held.length > 0) {
    const release = Math.min(...held.map((h) => h.release));
    if (release > untilMs) return null;
    const due = held.filter((h) => h.release === release);
    const before = await tick(worker, release - 1);
    const stillHeld = before.held.filter((at) => at === release).length;
    if (stillHeld !== due.length || due.some((h) => h.pending.settled)) {
      return `${due[0].label}: expected held until at_ms ${release}, but at ${release - 1} the isolate holds until ${before.held.join(", ") || "nothing"}`;
    }
    const reached = origin.received.length;
    const after = await tick(worker, release);
    if (after.held.includes(release)) {
      return `${due[0].label}: still held at at_ms ${release}, its release`;
    }
    for (const h of due) {
      held.splice(held.indexOf(h), 1);
      const { response, body } = await h.pending.promise;
      const differences = compare(response, body, h.expect);
      if (differences.length > 0) return `${h.label}, released at at_ms ${release}: ${differences.join("; ")}`;
      released.count += 1;
    }
    const arrived = origin.received.slice(reached);
    if (arrived.length !== due.length) {
      return `${due[0].label}: ${due.length} request(s) released at at_ms ${release}, ${arrived.length} reached the origin`;
    }
    for (const h of due) {
      const differences = arrived.map((received) => compareUpstream(received, h.expect));
      if (!differences.some((d) => d.length === 0)) return `${h.label}: ${differences[0].join("; ")}`;
    }
  }
  return null;
}
