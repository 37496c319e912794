// `wrangler deploy --dry-run` with the deployable wrangler.toml: runs its build command and
// bundles the worker as Cloudflare would receive it (validating the bindings and the
// migration), without an account. Prints the bundle's size, raw and gzipped.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { WORKER_DIR } from "./support/runtime.js";

test("wrangler deploy --dry-run builds a deployable bundle", () => {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), "sluice-bundle-"));
  try {
    const output = execFileSync(
      process.execPath,
      [path.join(WORKER_DIR, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", outdir],
      {
        cwd: WORKER_DIR,
        env: {
          ...process.env,
          WRANGLER_SEND_METRICS: "false",
          CLOUDFLARE_CF_FETCH_ENABLED: "false",
          WRANGLER_LOG_PATH: path.join(outdir, "logs"),
          CI: "true",
        },
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
        timeout: 300_000,
      },
    );
    assert.match(output, /--dry-run: exiting now\./);
    assert.match(output, /env\.LIMITER \(SluiceLimiter\)/);
    const files = fs.readdirSync(outdir).filter((f) => f !== "logs");
    const wasm = files.find((f) => f.endsWith(".wasm"));
    assert.ok(files.includes("index.js"), `bundle files: ${files}`);
    assert.ok(wasm, `bundle files: ${files}`);
    // What runs: the module and the wasm (wrangler also writes a source map and a README).
    const sizes = ["index.js", wasm].map((f) => {
      const bytes = fs.readFileSync(path.join(outdir, f));
      return { raw: bytes.length, gzip: zlib.gzipSync(bytes, { level: 9 }).length };
    });
    const raw = sizes[0].raw + sizes[1].raw;
    const gzip = sizes[0].gzip + sizes[1].gzip;
    console.log(
      `bundle: ${raw} bytes raw, ${gzip} bytes gzip (index.js ${sizes[0].raw} / ${sizes[0].gzip}, ` +
        `wasm ${sizes[1].raw} / ${sizes[1].gzip})`,
    );
    assert.ok(gzip < 3 * 1024 * 1024, "within the Workers free-plan size limit (3 MiB gzip)");
  } finally {
    fs.rmSync(outdir, { recursive: true, force: true });
  }
});
