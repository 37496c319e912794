// A local origin on 127.0.0.1 that answers 200 and records what reached it.
import http from "node:http";

export async function startOrigin() {
  const received = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      // `distinct`: each header's lines as sent (node joins repeated lines in `headers`).
      received.push({ method: req.method, url: req.url, headers: req.headers, distinct: req.headersDistinct, body });
      res.writeHead(200, { "content-type": "text/plain", "x-origin": "yes" });
      res.end(`origin saw ${req.method} ${req.url}\n`);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  // A test that fails before closing it must not keep its process alive.
  server.unref();
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    async close() {
      server.closeAllConnections?.();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
