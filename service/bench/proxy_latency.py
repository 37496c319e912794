#!/usr/bin/env python3
"""Added latency of a global rule through the filter, side by side in one run.

Starts a Redis, sluice-service and three `sluice serve` proxies in front of their built-in echo
upstream (no rule, one local rule, the same rule global), then sends N sequential keep-alive
requests to each, interleaved in rounds, and prints p50/p99 per path and the ratios. Run from
the repository root after `cargo build -p sluice-host -p sluice-service`:

    python3 service/bench/proxy_latency.py [N]   # default 2000 per path

Redis: `redis-server` from PATH, else the one `cargo test` provisioned into target/redis-server.
"""
import glob, http.client, json, os, shutil, socket, subprocess, sys, tempfile, time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
ROOT = os.getcwd()
# Dependencies (wasmtime, tokio, hyper) are optimised in the dev profile too (see Cargo.toml).
BIN = os.path.join(ROOT, "target", "debug")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def rule(scope):
    return {"name": "per-client", "scope": scope, "key": ["client_ip"],
            "limit": {"requests": 1000000000, "period": "1h"}}


def main():
    redis = shutil.which("redis-server") or next(iter(glob.glob("target/redis-server/*/redis-server")), None)
    if not redis:
        raise SystemExit("no redis-server: install one or run `cargo test -p sluice-redis-server` first")
    tmp = tempfile.mkdtemp()
    procs = []
    try:
        rport, hport = free_port(), free_port()
        procs.append(subprocess.Popen([redis, "--port", str(rport), "--save", "", "--dir", tmp],
                                      stdout=subprocess.DEVNULL))
        wait_port(rport)
        configs = {
            "none": {"rules": [{"name": "other", "match": {"paths": ["/never"]},
                                "key": ["client_ip"], "limit": {"requests": 1, "period": "1h"}}]},
            "local": {"rules": [rule("local")]},
            "global": {"global": {"cluster": "svc", "timeout": "1s"}, "rules": [rule("global")]},
        }
        paths = {}
        for name, config in configs.items():
            paths[name] = os.path.join(tmp, f"{name}.json")
            with open(paths[name], "w") as f:
                json.dump(config, f)
        procs.append(subprocess.Popen([os.path.join(BIN, "sluice-service"), "--config", paths["global"],
                                       "--redis", f"redis://127.0.0.1:{rport}", "--grpc-listen", "none",
                                       "--http-listen", f"127.0.0.1:{hport}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(hport)
        ports = {}
        for name in configs:
            ports[name] = free_port()
            procs.append(subprocess.Popen([os.path.join(BIN, "sluice"), "serve", "--config", paths[name],
                                           "--listen", f"127.0.0.1:{ports[name]}", "--workers", "1",
                                           "--cluster", f"svc=127.0.0.1:{hport}"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_port(ports[name])
        conns = {name: http.client.HTTPConnection("127.0.0.1", port) for name, port in ports.items()}
        samples = {name: [] for name in ports}
        for round_ in range(N // 100 + 2):
            for name, conn in conns.items():
                for _ in range(100):
                    start = time.perf_counter()
                    conn.request("GET", "/")
                    response = conn.getresponse()
                    response.read()
                    took = time.perf_counter() - start
                    if response.status != 200:
                        raise SystemExit(f"{name}: status {response.status}")
                    if round_ >= 2:  # the first 200 requests per path warm up
                        samples[name].append(took)
        pct = lambda xs, p: sorted(xs)[int(len(xs) * p)] * 1e3
        base = pct(samples["local"], 0.5)
        print(f"{'path':<40} {'p50 ms':>8} {'p99 ms':>8} {'p50 vs local':>13}")
        for name, label in [("none", "filter, no rule applies"), ("local", "one local rule (shared data)"),
                            ("global", "the same rule global (service + Redis)")]:
            p50, p99 = pct(samples[name], 0.5), pct(samples[name], 0.99)
            print(f"{label:<40} {p50:>8.3f} {p99:>8.3f} {p50 / base:>12.2f}x")
    finally:
        for p in procs:
            p.terminate()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
