// Reading the shared vectors (vectors/README.md) strictly: a field not described there, or a
// value of the wrong type, is an error, as in filters/policy/tests/vectors.rs.
import fs from "node:fs";
import path from "node:path";
import { VECTORS_DIR } from "./runtime.js";

export function vectorFiles() {
  return fs
    .readdirSync(VECTORS_DIR)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((f) => path.join(VECTORS_DIR, f));
}

function fields(value, at, allowed) {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${at}: expected an object`);
  }
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      throw new Error(`${at}: unknown field ${JSON.stringify(key)} (allowed: ${allowed.join(", ")})`);
    }
  }
  return value;
}

function string(map, field, at) {
  if (typeof map[field] !== "string") throw new Error(`${at}.${field}: expected a string`);
  return map[field];
}

function wholeNumber(value, at, min = 0) {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new Error(`${at}: expected a whole number${min ? ` of at least ${min}` : ""}`);
  }
  return value;
}

function lowercasePairs(value, at) {
  if (!Array.isArray(value)) throw new Error(`${at}: expected a list of [name, value] pairs`);
  return value.map((pair, i) => {
    if (
      !Array.isArray(pair) ||
      pair.length !== 2 ||
      typeof pair[0] !== "string" ||
      typeof pair[1] !== "string" ||
      pair[0] !== pair[0].toLowerCase()
    ) {
      throw new Error(`${at}[${i}]: expected [name, value] with a lowercase name`);
    }
    return pair;
  });
}

export function loadVector(file) {
  const value = JSON.parse(fs.readFileSync(file, "utf8"));
  const map = fields(value, "vector", ["description", "config", "steps"]);
  if (string(map, "description", "vector").trim() === "") {
    throw new Error("description: say what the vector proves");
  }
  if (map.config === undefined) throw new Error("config: required");
  if (!Array.isArray(map.steps) || map.steps.length === 0) {
    throw new Error("steps: expected a non-empty list");
  }
  const steps = map.steps.map((step, i) => parseStep(step, `steps[${i}]`));
  const ids = steps.filter((step) => step.id !== undefined).map((step) => step.id);
  if (new Set(ids).size !== ids.length) throw new Error("steps: an id is used twice");
  for (const [i, step] of steps.entries()) {
    if (step.end !== undefined && !steps.slice(0, i).some((s) => s.id === step.end)) {
      throw new Error(`steps[${i}].end: no earlier step has the id ${JSON.stringify(step.end)}`);
    }
  }
  return { config: map.config, steps };
}

const END_HOWS = ["response", "reset", "client_closed"];

function parseStep(value, at) {
  if (typeof value === "object" && value !== null && value.end !== undefined) {
    const end = fields(value, at, ["at_ms", "end", "how", "note"]);
    if (end.note !== undefined && typeof end.note !== "string") {
      throw new Error(`${at}.note: expected a string`);
    }
    if (!END_HOWS.includes(end.how)) throw new Error(`${at}.how: expected one of ${END_HOWS.join(", ")}`);
    return { atMs: wholeNumber(end.at_ms, `${at}.at_ms`), end: string(end, "end", at), how: end.how };
  }
  const map = fields(value, at, ["at_ms", "note", "id", "hold_upstream", "request", "repeat", "store_fails", "expect"]);
  if (map.id !== undefined && typeof map.id !== "string") throw new Error(`${at}.id: expected a string`);
  if (map.hold_upstream !== undefined && typeof map.hold_upstream !== "boolean") {
    throw new Error(`${at}.hold_upstream: expected true or false`);
  }
  const holdUpstream = map.hold_upstream ?? false;
  if (holdUpstream !== (map.id !== undefined)) throw new Error(`${at}: id and hold_upstream go together`);
  if (map.note !== undefined && typeof map.note !== "string") {
    throw new Error(`${at}.note: expected a string`);
  }
  const atMs = wholeNumber(map.at_ms, `${at}.at_ms`);
  const repeat = map.repeat === undefined ? 1 : wholeNumber(map.repeat, `${at}.repeat`, 1);
  if (map.store_fails !== undefined && typeof map.store_fails !== "boolean") {
    throw new Error(`${at}.store_fails: expected true or false`);
  }
  if (map.request === undefined) throw new Error(`${at}.request: required`);
  if (map.expect === undefined) throw new Error(`${at}.expect: required`);
  const r = fields(map.request, `${at}.request`, ["method", "path", "authority", "peer", "headers"]);
  if (r.peer !== undefined && typeof r.peer !== "string") {
    throw new Error(`${at}.request.peer: expected a string`);
  }
  const request = {
    method: string(r, "method", `${at}.request`),
    path: string(r, "path", `${at}.request`),
    authority: string(r, "authority", `${at}.request`),
    peer: r.peer,
    headers: r.headers === undefined ? [] : lowercasePairs(r.headers, `${at}.request.headers`),
  };
  const e = fields(map.expect, `${at}.expect`, [
    "status",
    "headers",
    "absent",
    "body",
    "upstream_headers",
    "upstream_absent",
    "held_ms",
  ]);
  const heldMs = e.held_ms === undefined ? 0 : wholeNumber(e.held_ms, `${at}.expect.held_ms`);
  if (heldMs > 0 && e.status !== 200) {
    throw new Error(`${at}.expect.held_ms: only a request passed upstream (status 200) is held`);
  }
  if (!Number.isInteger(e.status) || e.status < 100 || e.status > 65535) {
    throw new Error(`${at}.expect.status: expected a status code`);
  }
  const headers = headerValues(e.headers, `${at}.expect.headers`);
  const absent = headerNames(e.absent, `${at}.expect.absent`);
  const upstreamHeaders = headerValues(e.upstream_headers, `${at}.expect.upstream_headers`);
  const upstreamAbsent = headerNames(e.upstream_absent, `${at}.expect.upstream_absent`);
  if (e.status !== 200 && (upstreamHeaders.length > 0 || upstreamAbsent.length > 0)) {
    throw new Error(
      `${at}.expect: upstream_headers and upstream_absent are only for steps that expect status 200 (a local response never reaches the upstream)`,
    );
  }
  if (e.body !== undefined && typeof e.body !== "string") {
    throw new Error(`${at}.expect.body: expected a string`);
  }
  if (holdUpstream && (e.status !== 200 || repeat !== 1 || heldMs !== 0)) {
    throw new Error(`${at}.hold_upstream: only on a step expecting status 200, without repeat or held_ms`);
  }
  return {
    atMs,
    id: map.id,
    holdUpstream,
    repeat,
    storeFails: map.store_fails ?? false,
    request,
    expect: {
      status: e.status,
      headers,
      absent,
      body: e.body,
      upstreamHeaders,
      upstreamAbsent,
      heldMs,
    },
  };
}

/** `{"name": "value", ...}`, names lowercase, as [name, value] pairs. */
function headerValues(value, at) {
  const pairs = [];
  if (value === undefined) return pairs;
  fields(value, at, Object.keys(value));
  for (const [name, v] of Object.entries(value)) {
    if (typeof v !== "string" || name !== name.toLowerCase()) {
      throw new Error(`${at}.${name}: expected a string value and a lowercase name`);
    }
    pairs.push([name, v]);
  }
  return pairs;
}

/** `["name", ...]`, names lowercase. */
function headerNames(value, at) {
  const names = value ?? [];
  if (!Array.isArray(names) || names.some((n) => typeof n !== "string" || n !== n.toLowerCase())) {
    throw new Error(`${at}: expected lowercase header names`);
  }
  return names;
}

/** Whether the step says anything about the request the upstream receives. */
export function checksUpstream(expect) {
  return expect.upstreamHeaders.length > 0 || expect.upstreamAbsent.length > 0;
}

/**
 * Every way the request the origin received (`received`, as support/origin.js records it; null
 * if none arrived) differs from `expect.upstreamHeaders` and `expect.upstreamAbsent`: each
 * expected header in exactly one line with exactly that value.
 */
export function compareUpstream(received, expect) {
  if (!checksUpstream(expect)) return [];
  if (received === null) return ["the request did not reach the upstream"];
  const differences = [];
  for (const [name, value] of expect.upstreamHeaders) {
    const lines = received.distinct[name] ?? [];
    if (lines.length === 0) {
      differences.push(`upstream ${name}: expected ${JSON.stringify(value)}, but the upstream's request has none`);
    } else if (lines.length !== 1 || lines[0] !== value) {
      differences.push(`upstream ${name}: expected ${JSON.stringify(value)}, got ${JSON.stringify(lines)}`);
    }
  }
  for (const name of expect.upstreamAbsent) {
    const lines = received.distinct[name];
    if (lines !== undefined) differences.push(`upstream ${name}: expected absent, got ${JSON.stringify(lines)}`);
  }
  if (differences.length > 0) {
    const all = Object.entries(received.distinct).map(([n, v]) => `${n}: ${v.join(", ")}`).join(" | ");
    differences.push(`(all upstream request headers: ${all})`);
  }
  return differences;
}

/**
 * Whether a vector has streams that stay in flight (`hold_upstream`, end steps) or concurrency
 * rules, whose slots the runner waits to see given back after each request.
 */
export function hasStreams(vector) {
  return (
    (vector.config.rules ?? []).some((rule) => rule.concurrency !== undefined) ||
    vector.steps.some((step) => step.holdUpstream || step.end !== undefined)
  );
}

/**
 * Whether a vector holds requests (a rule with a `delay`, or a step expecting `held_ms`), as
 * `sluice_vectors::holds_requests` decides: the runner drives the isolate's test clock through
 * their holds, and leaves them out of the leased pass (a delay rule cannot have a lease).
 */
export function holdsRequests(vector) {
  return (
    (vector.config.rules ?? []).some((rule) => rule.delay !== undefined) ||
    vector.steps.some((step) => step.expect?.heldMs > 0)
  );
}

/**
 * The request of a step as the worker receives it: the vector's clock, peer and
 * CF-Connecting-IP header through the test hooks, and its store failure as failing limiter
 * objects. Repeated cookie lines are joined with "; ", as an HTTP/2 hop does (RFC 9113
 * 8.2.3) before a request reaches a worker; other repeated lines are kept as repeated lines.
 */
export function stepRequest(step) {
  const headers = new Headers();
  const cookies = [];
  for (const [name, value] of step.request.headers) {
    if (name === "cookie") cookies.push(value);
    // The dev runtime sets its own CF-Connecting-IP; the vector's goes through the hook.
    else if (name === "cf-connecting-ip") headers.append("x-sluice-test-cf-connecting-ip", value);
    else headers.append(name, value);
  }
  if (cookies.length > 0) headers.set("cookie", cookies.join("; "));
  headers.set("x-sluice-test-now-ms", String(step.atMs));
  headers.set("x-sluice-test-peer", step.request.peer ?? "none");
  if (step.storeFails) headers.set("x-sluice-test-object-fails", "1");
  // The test origin holds its answer until the stream's end step (support/origin.js).
  if (step.holdUpstream) headers.set("x-origin-hold", step.id);
  return {
    url: `http://${step.request.authority}${step.request.path}`,
    init: { method: step.request.method, headers },
  };
}

/** Every way `response` (status, headers, body) differs from `expect`; empty if it matches. */
export function compare(response, body, expect) {
  const differences = [];
  if (response.status !== expect.status) {
    differences.push(`status: expected ${expect.status}, got ${response.status}`);
  }
  for (const [name, value] of expect.headers) {
    const actual = response.headers.get(name);
    if (actual === null) differences.push(`${name}: expected ${JSON.stringify(value)}, but it is absent`);
    else if (actual !== value) {
      differences.push(`${name}: expected ${JSON.stringify(value)}, got ${JSON.stringify(actual)}`);
    }
  }
  for (const name of expect.absent) {
    const actual = response.headers.get(name);
    if (actual !== null) differences.push(`${name}: expected absent, got ${JSON.stringify(actual)}`);
  }
  if (expect.body !== undefined) {
    if (response.status === 200) {
      differences.push(`body: expected the local response ${JSON.stringify(expect.body)}, but the request was passed`);
    } else if (body !== expect.body) {
      differences.push(`body: expected ${JSON.stringify(expect.body)}, got ${JSON.stringify(body)}`);
    }
  }
  if (differences.length > 0) {
    const all = [...response.headers].map(([n, v]) => `${n}: ${v}`).join(" | ");
    differences.push(`(all headers: ${all})`);
  }
  return differences;
}
