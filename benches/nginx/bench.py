#!/usr/bin/env python3
"""sluice against a pass-through filter in a real NGINX with Kong's ngx_wasm_module.

Needs an NGINX built with ngx_wasm_module (e.g. by a local build script; CI has none) and
`wrk`. Run from the repository root:

    NGX_WASM_NGINX=/path/to/sbin/nginx python3 benches/nginx/bench.py [options]

It builds both filters as they ship (`cargo run -p sluice-build-support --bin build-filter`,
the README's build, and the same for `benches/passthrough-filter`), starts one NGINX
(2 worker processes by default) with one server per contender, each answering with
`empty_gif` behind its `proxy_wasm` filter, and runs `wrk` against the contenders in
interleaved rounds (each round runs every contender once, in a rotating order). Per contender
it reports the median over rounds of its throughput divided by the pass-through's in the same
round, the spread of that ratio over rounds (min-max), and NGINX's CPU time per request (the
worker processes' user + system time from /proc over the run, divided by the requests
completed), also as a median.

Contenders: `pass-through` (benches/passthrough-filter: reads the header map, the clock and
the peer address), `sluice 1 rule` (keyed by client IP, never denying, default `ietf`
headers), `sluice 5 rules` (the five rules of benches/filter, all applying, never denying),
`sluice denied` (1 rule, every request denied after the first), and the floors of the 1- and
5-rule contenders: `host-call floor of 1 rule` and `of 5 rules`, the pass-through configured
`floor 1` and `floor 5` (the host calls sluice makes for that many rules, nothing else; the
filter benchmark's `the_floors_make_sluices_host_calls...` test proves them the same calls).

`--cost-model` measures instead what each host call costs in this NGINX: the pass-through
repeating one call N times per request (`--repeat`, default 20) against the plain pass-through;
a call's cost is the median over rounds of (CPU per request with N calls - without) / N.

Options: --rounds N (6), --seconds S per run (5), --connections C (32), --threads T (2),
--workers W (2), --sluice-wasm PATH and --passthrough-wasm PATH (measure other builds, e.g.
an older one, instead of building), --also LABEL=PATH (repeatable: another sluice build as
more contenders, 1 rule and 5 rules, in the same run, e.g. another release profile),
--repeat N.
"""
import argparse, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.getcwd()

ONE_RULE = ('{"rules": [{"name": "per-client", "key": ["client_ip"], '
            '"limit": {"requests": 1000000000, "period": "1s"}}]}')
FIVE_RULES = ('{"rules": ['
              '{"name": "per-client", "key": ["client_ip"], '
              '"limit": {"requests": 1000000000, "period": "1s"}}, '
              '{"name": "per-api-key", "match": {"path_prefixes": ["/api/"]}, '
              '"key": [{"header": "x-api-key", "secret": true}], "when_key_missing": "skip", '
              '"limit": {"requests": 1000000000, "period": "1h"}, "algorithm": "fixed_window"}, '
              '{"name": "per-route", "match": {"methods": ["GET", "POST"]}, "key": ["method", "path"], '
              '"limit": {"requests": 1000000000, "period": "1m"}, "algorithm": "sliding_window"}, '
              '{"name": "per-host", "match": {"hosts": ["*.example.com"]}, "key": ["host"], '
              '"limit": {"requests": 1000000000, "period": "1s"}}, '
              '{"name": "global", "key": [{"const": "global"}], '
              '"limit": {"requests": 1000000000, "period": "1s"}, "algorithm": "fixed_window"}]}')
DENIED = ('{"rules": [{"name": "everyone", "key": [{"const": "all"}], '
          '"limit": {"requests": 1, "period": "1d"}}]}')

CONTENDERS = [
    ("pass-through", "passthrough", ""),
    ("sluice, 1 rule", "sluice", ONE_RULE),
    ("sluice, 5 rules", "sluice", FIVE_RULES),
    ("sluice, denied", "sluice", DENIED),
    ("host-call floor of 1 rule", "passthrough", "floor 1"),
    ("host-call floor of 5 rules", "passthrough", "floor 5"),
]
CALLS = ["get_header_map_pairs", "get_current_time", "get_property", "get_shared_data",
         "set_shared_data", "increment_metric", "add_response_header"]


def build(which):
    out = subprocess.run(["cargo", "run", "-q", "-p", "sluice-build-support", "--bin",
                          "build-filter", "--", which], check=True, capture_output=True,
                         text=True).stdout
    return os.path.join(ROOT, out.split(" (")[0].strip())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"NGINX does not listen on {port}: see its error.log")


def nginx_conf(workdir, workers, modules, servers):
    wasm_modules = "\n".join(f"    module {name} {path};" for name, path in modules.items())
    blocks = []
    for port, module, config in servers:
        # NGINX unescapes backslashes; the configs have none.
        blocks.append(f"""
    server {{
        listen 127.0.0.1:{port} reuseport;
        access_log off;
        location / {{
            proxy_wasm {module} '{config}';
            empty_gif;
        }}
    }}""")
    return f"""
worker_processes {workers};
daemon on;
master_process on;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 4096; }}
wasm {{
{wasm_modules}
    shm_kv sluice 256m eviction=lru;
}}
http {{
    keepalive_requests 1000000;
{''.join(blocks)}
}}
"""


def worker_pids(master):
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def cpu_seconds(pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def run_wrk(port, args, path="/api/v1/items/7?page=2"):
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s",
           "-H", "Host: api.example.com", "-H", "x-api-key: key-00000007",
           "-H", "user-agent: bench-client/1.0", "-H", "accept: application/json",
           f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if os.environ.get("BENCH_DEBUG"):
        print(out, file=sys.stderr)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rate = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
    return requests, rate


def measure(nginx, args, contenders, modules):
    workdir = tempfile.mkdtemp(prefix="sluice-ngx-bench-")
    os.makedirs(os.path.join(workdir, "logs"))
    ports = [free_port() for _ in contenders]
    servers = [(port, module, config) for port, (_, module, config) in zip(ports, contenders)]
    conf = os.path.join(workdir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(nginx_conf(workdir, args.workers, modules, servers))
    subprocess.run([nginx, "-p", workdir, "-c", conf], check=True)
    try:
        for port in ports:
            wait_port(port)
        pid_file = os.path.join(workdir, "nginx.pid")
        for _ in range(100):
            if os.path.exists(pid_file) and open(pid_file).read().strip():
                break
            time.sleep(0.1)
        with open(pid_file) as f:
            workers = worker_pids(int(f.read()))
        if len(workers) != args.workers:
            raise SystemExit(f"NGINX runs {len(workers)} workers, not {args.workers}")
        # Warm up every contender (each worker's VMs instantiated and configured, sluice's
        # tables created, caches filled): a worker configuring one filter serves no other, so
        # twice over all of them, and the second pass must see every contender answer.
        warm = argparse.Namespace(**{**vars(args), "seconds": 2})
        for pass_ in range(2):
            for port in ports:
                requests, _ = run_wrk(port, warm)
                if pass_ == 1 and requests == 0:
                    raise SystemExit(f"no answer on {port} after warming up: see error.log")
        rates = [[] for _ in contenders]
        cpu = [[] for _ in contenders]
        for round_ in range(args.rounds):
            for offset in range(len(contenders)):
                i = (round_ + offset) % len(contenders)
                before = cpu_seconds(workers)
                requests, rate = run_wrk(ports[i], args)
                used = cpu_seconds(workers) - before
                rates[i].append(rate)
                cpu[i].append(used / max(requests, 1) * 1e6)
            print(f"  round {round_ + 1}/{args.rounds} done", file=sys.stderr)
        with open(os.path.join(workdir, "error.log")) as f:
            errors = [l for l in f if "[emerg]" in l or "[alert]" in l or "[crit]" in l]
        if errors:
            print("NGINX logged errors:\n" + "".join(errors[:10]), file=sys.stderr)
        return rates, cpu
    except SystemExit:
        with open(os.path.join(workdir, "error.log")) as f:
            print("NGINX error.log (last lines):\n" + "".join(f.readlines()[-15:]),
                  file=sys.stderr)
        raise
    finally:
        subprocess.run([nginx, "-p", workdir, "-c", conf, "-s", "stop"])
        time.sleep(0.5)
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--sluice-wasm")
    parser.add_argument("--passthrough-wasm")
    parser.add_argument("--cost-model", action="store_true")
    parser.add_argument("--also", action="append", default=[])
    args = parser.parse_args()
    nginx = os.environ.get("NGX_WASM_NGINX")
    if not nginx or not os.access(nginx, os.X_OK):
        raise SystemExit("set NGX_WASM_NGINX to an nginx binary built with ngx_wasm_module")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed (Debian: apt-get install wrk)")
    modules = {"passthrough": args.passthrough_wasm or build("passthrough")}
    if args.cost_model:
        contenders = [("pass-through", "passthrough", "")] + [
            (f"+{args.repeat} {call}", "passthrough", f"{call} {args.repeat}") for call in CALLS]
    else:
        modules["sluice"] = args.sluice_wasm or build("sluice")
        contenders = list(CONTENDERS)
        for n, also in enumerate(args.also):
            label, path = also.split("=", 1)
            modules[f"also{n}"] = path
            contenders += [(f"{label}, 1 rule", f"also{n}", ONE_RULE),
                           (f"{label}, 5 rules", f"also{n}", FIVE_RULES)]
    for name, path in modules.items():
        print(f"{name}: {path} ({os.path.getsize(path)} bytes)")
    print(f"nginx: {nginx}, {args.workers} workers; wrk -t{args.threads} -c{args.connections} "
          f"-d{args.seconds}s; {args.rounds} interleaved rounds; medians (min-max over rounds)")
    rates, cpu = measure(nginx, args, contenders, modules)
    base_cpu = cpu[0]
    if args.cost_model:
        print(f"{'host call':<28} {'CPU us/request':>16} {'us per call':>14}")
        for i, (name, _, _) in enumerate(contenders):
            per_call = ""
            if i > 0:
                costs = [(c - b) / args.repeat for c, b in zip(cpu[i], base_cpu)]
                per_call = (f"{statistics.median(costs):.3f} "
                            f"({min(costs):.3f}-{max(costs):.3f})")
            print(f"{name:<28} {statistics.median(cpu[i]):>16.2f} {per_call:>14}")
        return
    print(f"| contender | throughput vs pass-through | req/s | NGINX CPU per request |")
    print(f"|---|---|---|---|")
    for i, (name, _, _) in enumerate(contenders):
        ratios = [r / b for r, b in zip(rates[i], rates[0])]
        print(f"| {name} | {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) "
              f"| {statistics.median(rates[i]):.0f} | {statistics.median(cpu[i]):.1f} us "
              f"({min(cpu[i]):.1f}-{max(cpu[i]):.1f}) |")


if __name__ == "__main__":
    main()
