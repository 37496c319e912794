#!/usr/bin/env python3
"""Leases, measured side by side in one run: per algorithm and lease configuration, the global
round trips per request, the added latency (p50/p99) against a local-only rule and against a
global check per request, and the over-admission observed against the stated bound.

Starts a Redis, one sluice-service and `sluice serve` proxies in front of their built-in echo
upstream, all with one config whose rules each match their own path. Run from the repository
root after `cargo build -p sluice-host -p sluice-service`:

    python3 benches/lease_figures.py [N] [SECONDS]   # default 2000 requests per path, 3 s per bound run

1. Latency and round trips: one proxy (one VM); N sequential keep-alive requests per path,
   interleaved in rounds of 100 after 200 warm-up each. Round trips are the service's request
   count (`sluice_service_requests_total`) over each round, so renewals and returns made by
   the proxy's tick count too.
2. Over-admission: three proxies (two VMs each), one client thread per VM, hammering one key
   of a leased rule with a limit of 200 per second for SECONDS; the admitted requests per
   aligned one-second window against limit + proxies x slice.

Redis: `redis-server` from PATH, else the one `cargo test` provisioned into target/redis-server.
"""
import glob, http.client, json, os, re, shutil, socket, subprocess, sys, tempfile, threading, time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
ROOT = os.getcwd()
BIN = os.path.join(ROOT, "target", "debug")
ALGORITHMS = ["gcra", "fixed_window", "sliding_window"]
LEASES = [
    ("fixed 10", {"size": 10, "lifetime": "1s"}, 10),
    ("fixed 100", {"size": 100, "lifetime": "1s"}, 100),
    ("auto, max 100", {"size": "auto", "max": 100, "lifetime": "1s"}, 100),
]
BOUND_LIMIT = 200


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


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def rules():
    """(path, label, rule) for every path measured."""
    out = [("/local", "local rule", {"scope": "local"}),
           ("/global", "global, no lease", {"scope": "global"})]
    for algorithm in ALGORITHMS:
        for label, lease, _ in LEASES:
            out.append((f"/{algorithm}/{slug(label)}", f"{algorithm}, {label}",
                        {"scope": "global", "algorithm": algorithm, "lease": lease}))
    return out


def config(limit, period):
    config = {"global": {"cluster": "svc", "timeout": "1s"}, "rules": []}
    for path, _, extra in rules():
        rule = {"name": slug(path) or "root", "match": {"paths": [path]},
                "key": ["client_ip"], "max_keys": 1024,
                "limit": {"requests": limit, "period": period}}
        rule.update(extra)
        config["rules"].append(rule)
    return config


def service_requests(port):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("sluice_service_requests_total"))


class Stack:
    def __init__(self, tmp, redis):
        self.tmp, self.redis, self.procs = tmp, redis, []

    def start(self, argv):
        self.procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def service(self, config_path):
        rport, hport = free_port(), free_port()
        self.start([self.redis, "--port", str(rport), "--save", "", "--dir", self.tmp])
        wait_port(rport)
        self.start([os.path.join(BIN, "sluice-service"), "--config", config_path,
                    "--redis", f"redis://127.0.0.1:{rport}", "--grpc-listen", "none",
                    "--http-listen", f"127.0.0.1:{hport}"])
        wait_port(hport)
        return hport

    def proxy(self, config_path, hport, workers):
        port = free_port()
        self.start([os.path.join(BIN, "sluice"), "serve", "--config", config_path,
                    "--listen", f"127.0.0.1:{port}", "--workers", str(workers),
                    "--cluster", f"svc=127.0.0.1:{hport}"])
        wait_port(port)
        return port

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait()
        self.procs = []


def write(tmp, name, config):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        json.dump(config, f)
    return path


def latency(stack, tmp):
    path = write(tmp, "latency.json", config(1_000_000_000, "1h"))
    hport = stack.service(path)
    port = stack.proxy(path, hport, 1)
    paths = [("/none", "filter, no rule applies")] + [(p, label) for p, label, _ in rules()]
    conn = http.client.HTTPConnection("127.0.0.1", port)
    samples = {p: [] for p, _ in paths}
    calls = {p: 0.0 for p, _ in paths}
    counted = {p: 0 for p, _ in paths}
    for round_ in range(N // 100 + 2):
        for p, _ in paths:
            before = service_requests(hport)
            for _ in range(100):
                start = time.perf_counter()
                conn.request("GET", p)
                response = conn.getresponse()
                response.read()
                took = time.perf_counter() - start
                if response.status != 200:
                    raise SystemExit(f"{p}: status {response.status}")
                if round_ >= 2:
                    samples[p].append(took)
            if round_ >= 2:
                # The tick's background calls of this round land within a few ms.
                time.sleep(0.12)
                calls[p] += service_requests(hport) - before
                counted[p] += 100
    stack.stop()
    pct = lambda xs, q: sorted(xs)[int(len(xs) * q)] * 1e3
    local50, local99 = pct(samples["/local"], 0.5), pct(samples["/local"], 0.99)
    global50, global99 = pct(samples["/global"], 0.5), pct(samples["/global"], 0.99)
    print(f"\n{N} sequential requests per path, one proxy (1 VM), one client key\n")
    print("| path | round trips / request | p50 | p99 | added p50 vs local | p50 vs global per request |")
    print("|---|---|---|---|---|---|")
    for p, label in paths:
        p50, p99 = pct(samples[p], 0.5), pct(samples[p], 0.99)
        print(f"| {label} | {calls[p] / max(counted[p], 1):.3f} | {p50:.3f} ms | {p99:.3f} ms | "
              f"{p50 - local50:+.3f} ms | {p50 / global50:.2f}x |")


def bound(stack, tmp):
    path = write(tmp, "bound.json", config(BOUND_LIMIT, "1s"))
    print(f"\nOver-admission: 3 proxies x 2 VMs, one client thread per VM on one key, "
          f"{SECONDS:.0f} s per rule, limit {BOUND_LIMIT}/s\n")
    print("| rule | requests | round trips / request | admitted per 1 s window | max | bound (limit + 3 x slice) |")
    print("|---|---|---|---|---|---|")
    for p, label, extra in rules()[1:]:
        hport = stack.service(path)
        ports = [stack.proxy(path, hport, 2) for _ in range(3)]
        slice_ = next((s for l, _, s in LEASES if label.endswith(l)), 0)
        admitted, sent, lock = {}, [0], threading.Lock()
        deadline = time.time() + SECONDS
        before = service_requests(hport)

        def client(port):
            conn = http.client.HTTPConnection("127.0.0.1", port)
            while time.time() < deadline:
                conn.request("GET", p)
                response = conn.getresponse()
                response.read()
                at = time.time()
                with lock:
                    sent[0] += 1
                    if response.status == 200:
                        window = int(at)
                        admitted[window] = admitted.get(window, 0) + 1

        threads = [threading.Thread(target=client, args=(port,)) for port in ports for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(0.2)
        trips = service_requests(hport) - before
        stack.stop()
        # Whole windows only (the first and last are cut by the run's start and end).
        windows = [admitted[w] for w in sorted(admitted)][1:-1]
        print(f"| {label} | {sent[0]} | {trips / max(sent[0], 1):.3f} | {windows} | "
              f"{max(windows) if windows else 0} | {BOUND_LIMIT + 3 * slice_} |")


def main():
    redis = shutil.which("redis-server") or next(iter(glob.glob("target/redis-server/*/redis-server")), None)
    if not redis:
        raise SystemExit("no redis-server: install one or run `cargo test -p sluice-redis-server` first")
    tmp = tempfile.mkdtemp()
    stack = Stack(tmp, redis)
    try:
        latency(stack, tmp)
        bound(stack, tmp)
    finally:
        stack.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
