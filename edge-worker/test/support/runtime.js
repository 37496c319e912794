// The built worker (build/index.js + build/index_bg.wasm) running in workerd through
// miniflare, configured as wrangler.toml configures it (the LIMITER binding, the SQLite-backed
// SluiceLimiter class), plus the test hooks, which only this file ever enables.
import { Miniflare } from "miniflare";
import { fileURLToPath } from "node:url";
import path from "node:path";
import fs from "node:fs";

export const WORKER_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const BUILD_DIR = path.join(WORKER_DIR, "build");
export const VECTORS_DIR = path.resolve(WORKER_DIR, "../vectors");

const WRANGLER_TOML = fs.readFileSync(path.join(WORKER_DIR, "wrangler.toml"), "utf8");
// The compatibility date and flags of wrangler.toml.
const COMPATIBILITY_DATE = WRANGLER_TOML.match(/^compatibility_date\s*=\s*"([^"]+)"/m)[1];
const COMPATIBILITY_FLAGS = JSON.parse(
  WRANGLER_TOML.match(/^compatibility_flags\s*=\s*(\[[^\]]*\])/m)?.[1] ?? "[]",
);

/**
 * Starts the worker.
 * - `config`: the sluice configuration (object, or a string passed as is); undefined: the
 *   bundled sluice.json. `configAsObject`: bind it as a JSON object, as `[vars]` can.
 * - `origin`: base URL of the origin (SLUICE_ORIGIN).
 * - `persist`: a directory for Durable Object storage (survives dispose), or undefined for
 *   in-memory storage.
 * - `timeoutMs`: SLUICE_OBJECT_TIMEOUT_MS.
 * - `hooks`: false to run without the test hooks, as deployed.
 */
export async function startWorker({ config, configAsObject = false, origin, persist, timeoutMs, hooks = true } = {}) {
  const bindings = {};
  if (config !== undefined) {
    bindings.SLUICE_CONFIG =
      typeof config === "string" || configAsObject ? config : JSON.stringify(config);
  }
  if (origin !== undefined) bindings.SLUICE_ORIGIN = origin;
  if (timeoutMs !== undefined) bindings.SLUICE_OBJECT_TIMEOUT_MS = String(timeoutMs);
  if (hooks) bindings.SLUICE_TEST_HOOKS = "enabled";
  const logs = [];
  const mf = new Miniflare({
    modules: [
      { type: "ESModule", path: path.join(BUILD_DIR, "index.js") },
      { type: "CompiledWasm", path: path.join(BUILD_DIR, "index_bg.wasm") },
    ],
    modulesRoot: BUILD_DIR,
    compatibilityDate: COMPATIBILITY_DATE,
    compatibilityFlags: COMPATIBILITY_FLAGS,
    durableObjects: { LIMITER: { className: "SluiceLimiter", useSQLite: true } },
    durableObjectsPersist: persist ?? false,
    bindings,
    handleRuntimeStdio(stdout, stderr) {
      for (const stream of [stdout, stderr]) {
        stream.setEncoding("utf8");
        stream.on("data", (chunk) => logs.push(chunk));
      }
    },
  });
  await mf.ready;
  return {
    mf,
    logs,
    /** Sends a request; `headers` is a list of [name, value] pairs or an object. */
    async fetch(url, init = {}) {
      return mf.dispatchFetch(url, { redirect: "manual", ...init });
    },
    async dispose() {
      await mf.dispose();
    },
  };
}

/**
 * Starts `count` copies of the worker, each in its own isolate (so each with its own negative
 * cache), all using the limiter objects of the first, as the isolates of one deployment do.
 * `fetch(i, url, init)` sends a request to copy `i`. Options as for `startWorker`.
 */
export async function startIsolates(count, { config, origin } = {}) {
  const bindings = { SLUICE_TEST_HOOKS: "enabled" };
  if (config !== undefined) bindings.SLUICE_CONFIG = JSON.stringify(config);
  if (origin !== undefined) bindings.SLUICE_ORIGIN = origin;
  const names = Array.from({ length: count }, (_, i) => `sluice-${i}`);
  const logs = [];
  const mf = new Miniflare({
    workers: names.map((name, i) => ({
      name,
      modules: [
        { type: "ESModule", path: path.join(BUILD_DIR, "index.js") },
        { type: "CompiledWasm", path: path.join(BUILD_DIR, "index_bg.wasm") },
      ],
      modulesRoot: BUILD_DIR,
      compatibilityDate: COMPATIBILITY_DATE,
      compatibilityFlags: COMPATIBILITY_FLAGS,
      durableObjects: {
        LIMITER: { className: "SluiceLimiter", useSQLite: true, ...(i > 0 ? { scriptName: names[0] } : {}) },
      },
      bindings,
    })),
    durableObjectsPersist: false,
    handleRuntimeStdio(stdout, stderr) {
      for (const stream of [stdout, stderr]) {
        stream.setEncoding("utf8");
        stream.on("data", (chunk) => logs.push(chunk));
      }
    },
  });
  await mf.ready;
  const workers = await Promise.all(names.map((name) => mf.getWorker(name)));
  return {
    mf,
    logs,
    async fetch(i, url, init = {}) {
      return workers[i].fetch(url, { redirect: "manual", ...init });
    },
    async dispose() {
      await mf.dispose();
    },
  };
}

/** The vector epoch (at_ms 0) is a test-clock value; this turns at_ms into the hook header. */
export function clockHeader(atMs) {
  return ["x-sluice-test-now-ms", String(atMs)];
}

/** Waits for `predicate` over the runtime's logs, up to `ms`. */
export async function waitForLog(runtime, predicate, ms = 2000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (predicate(runtime.logs.join(""))) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return predicate(runtime.logs.join(""));
}
