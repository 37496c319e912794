// A local origin on 127.0.0.1 that answers 200 and records what reached it (and when, in
// performance.now() milliseconds, the clock tests measure holds by).
//
// Tests can shape its answers with request headers (they reach it like any other header):
// - `x-origin-hold: NAME`: the answer waits until the test calls `finish(NAME)` (or
//   `reset(NAME)`, which drops it unanswered): a request that stays in flight as long as the
//   test wants;
// - `x-origin-status: N`: answer with status N;
// - `x-origin-reset: 1`: drop the connection without answering (an origin failure).
import http from "node:http";
import { performance } from "node:perf_hooks";

export async function startOrigin() {
  const received = [];
  // NAME -> the answer of each request held under it.
  const held = new Map();
  const server = http.createServer((req, res) => {
    const at = performance.now();
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      // `distinct`: each header's lines as sent (node joins repeated lines in `headers`).
      received.push({ method: req.method, url: req.url, headers: req.headers, distinct: req.headersDistinct, body, at });
      if (req.headers["x-origin-reset"] === "1") {
        req.socket.destroy();
        return;
      }
      const answer = (status = Number(req.headers["x-origin-status"] ?? 200)) => {
        res.writeHead(status, { "content-type": "text/plain", "x-origin": "yes" });
        res.end(`origin saw ${req.method} ${req.url}\n`);
      };
      const name = req.headers["x-origin-hold"];
      if (name === undefined) {
        answer();
        return;
      }
      if (!held.has(name)) held.set(name, []);
      held.get(name).push({ answer, socket: req.socket });
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  // A test that fails before closing it must not keep its process alive.
  server.unref();
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    /** How many requests are held under `name` now. */
    holding(name) {
      return held.get(name)?.length ?? 0;
    },
    /** Answers every request held under `name` (with `status`, else as it asked). */
    finish(name, status) {
      for (const { answer } of held.get(name) ?? []) answer(status);
      held.delete(name);
    },
    /** Drops the connection of every request held under `name` without an answer. */
    reset(name) {
      for (const { socket } of held.get(name) ?? []) socket.destroy();
      held.delete(name);
    },
    async close() {
      for (const name of [...held.keys()]) this.finish(name);
      server.closeAllConnections?.();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
