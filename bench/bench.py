"""Runs the proxies in turn against one nginx backend, pinned: load generator on core 0, proxy and
backend on core 1. Interleaves the peers over several rounds and reports medians and ratios.

Called by bench/run (which installs the tools and builds Gantry in release)."""

import datetime
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RUN = os.path.join(HERE, "tmp")
GANTRY = os.path.join(HERE, "..", "target", "release", "gantry")
DURATION = int(os.environ.get("BENCH_DURATION", "8"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOAD_CORE, SERVER_CORE = "0", "1"

PEERS = {
    # name: (command or None, http1 port, h2c port or None)
    "direct": (None, 18100, None),
    "nginx": (["nginx", "-p", HERE + "/", "-c", "nginx-proxy.conf"], 18101, 18111),
    "haproxy": (["haproxy", "-f", "haproxy.cfg"], 18102, 18112),
    "gantry": ([GANTRY, "run", "-c", "gantry.yaml"], 18103, 18103),
}

SCENARIOS = [
    ("get-c50", "GET, 50 connections"),
    ("get-c200", "GET, 200 connections"),
    ("post-1k-c50", "POST 1 KiB, 50 connections"),
    ("h2-c50", "HTTP/2 (h2c) GET, 50 connections x 10 streams"),
]


def pinned(cmd, core):
    return ["taskset", "-c", core] + cmd


def start(cmd):
    proc = subprocess.Popen(
        pinned(cmd, SERVER_CORE), cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    time.sleep(0.7)
    if proc.poll() is not None:
        sys.exit(f"{cmd[0]} exited at start (code {proc.returncode})")
    return proc


def stop(proc):
    if proc is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def group_pids(proc):
    """The process and its children (nginx's worker does the work)."""
    if proc is None:
        return []
    pids = [proc.pid]
    out = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout
    pids += [int(p) for p in out.split() if int(p) != proc.pid]
    return pids


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def to_ms(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(port, connections, script=None, duration=DURATION):
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if script:
        cmd += ["-s", os.path.join(HERE, script)]
    cmd.append(f"http://127.0.0.1:{port}/")
    out = subprocess.run(pinned(cmd, LOAD_CORE), capture_output=True, text=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": to_ms(re.search(r"50%\s+(\S+)", out).group(1)),
        "p99_ms": to_ms(re.search(r"99%\s+(\S+)", out).group(1)),
        "errors": (int(errors.group(1)) if errors else 0) + (1 if socket_errors else 0),
    }


def run_h2load(port, duration=DURATION):
    cmd = ["h2load", "-c50", "-m10", "-t1", f"-D{duration}", f"http://127.0.0.1:{port}/"]
    out = subprocess.run(pinned(cmd, LOAD_CORE), capture_output=True, text=True).stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    rps = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)
    succeeded = int(done.group(2)) if done else 0
    return {
        "requests": succeeded,
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50_ms": None,  # h2load reports min/max/mean only
        "p99_ms": None,
        "mean_ms": to_ms(mean.group(1)) if mean else None,
        "errors": (int(done.group(1)) - succeeded) if done else 1,
    }


def measure(scenario, port, h2_port, pids):
    if scenario == "h2-c50" and h2_port is None:
        return None
    before = cpu_ticks(pids)
    if scenario == "get-c50":
        result = run_wrk(port, 50)
    elif scenario == "get-c200":
        result = run_wrk(port, 200)
    elif scenario == "post-1k-c50":
        result = run_wrk(port, 50, "post-1k.lua")
    else:
        result = run_h2load(h2_port)
    ticks = cpu_ticks(pids) - before
    if pids and result["requests"]:
        result["cpu_us_per_req"] = ticks * 1e6 / CLK_TCK / result["requests"]
    result["rss_kib"] = rss_kib(pids) if pids else None
    return result


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main():
    backend = start(["nginx", "-p", HERE + "/", "-c", "nginx-backend.conf"])
    samples = {}  # (peer, scenario) -> [result]
    idle_rss = {}
    try:
        for round_no in range(ROUNDS):
            # Interleave the peers; rotate the order each round so none always goes first.
            order = list(PEERS)
            order = order[round_no % len(order):] + order[:round_no % len(order)]
            for peer in order:
                cmd, port, h2_port = PEERS[peer]
                proc = start(cmd) if cmd else None
                pids = group_pids(proc)
                if pids and peer not in idle_rss:
                    idle_rss[peer] = rss_kib(pids)
                try:
                    run_wrk(port, 50, duration=2)  # warm-up: pools, caches
                    for scenario, _ in SCENARIOS:
                        result = measure(scenario, port, h2_port, pids)
                        if result is not None:
                            samples.setdefault((peer, scenario), []).append(result)
                            print(f"round {round_no + 1} {peer:8} {scenario:12} "
                                  f"{result['rps']:>10.0f} req/s", flush=True)
                finally:
                    stop(proc)
    finally:
        stop(backend)
    report(samples, idle_rss)


def report(samples, idle_rss):
    table = {}
    for (peer, scenario), results in samples.items():
        table.setdefault(scenario, {})[peer] = {
            key: median([r.get(key) for r in results])
            for key in ["rps", "p50_ms", "p99_ms", "mean_ms", "cpu_us_per_req", "rss_kib", "errors"]
        }
    lines = []
    header = f"{'scenario':13} {'peer':8} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} {'RSS MiB':>8}"
    lines.append(header)
    lines.append("-" * len(header))
    ratios = {}
    for scenario, _ in SCENARIOS:
        peers = table.get(scenario, {})
        for peer in PEERS:
            r = peers.get(peer)
            if not r:
                continue
            fmt = lambda v, spec: format(v, spec) if v is not None else "-".rjust(int(spec.split(".")[0].lstrip(">")))
            rss = r["rss_kib"] / 1024 if r["rss_kib"] else None
            lat50 = r["p50_ms"] if r["p50_ms"] is not None else r.get("mean_ms")
            lines.append(f"{scenario:13} {peer:8} {fmt(r['rps'], '>9.0f')} {fmt(lat50, '>7.2f')} "
                         f"{fmt(r['p99_ms'], '>7.2f')} {fmt(r['cpu_us_per_req'], '>10.1f')} {fmt(rss, '>8.1f')}")
        g = peers.get("gantry")
        for other in ["nginx", "haproxy"]:
            o = peers.get(other)
            if g and o and o["rps"]:
                ratios.setdefault(scenario, {})[f"gantry/{other}"] = {
                    "rps": g["rps"] / o["rps"],
                    "cpu_per_req": (g["cpu_us_per_req"] / o["cpu_us_per_req"])
                    if g.get("cpu_us_per_req") and o.get("cpu_us_per_req") else None,
                    "p99": (g["p99_ms"] / o["p99_ms"]) if g.get("p99_ms") and o.get("p99_ms") else None,
                }
        lines.append("")
    lines.append("ratios (Gantry / peer): req/s, CPU per request, p99")
    for scenario, by_peer in ratios.items():
        for name, r in by_peer.items():
            cpu = f"{r['cpu_per_req']:.2f}" if r["cpu_per_req"] else "-"
            p99 = f"{r['p99']:.2f}" if r["p99"] else "-"
            lines.append(f"  {scenario:13} {name:15} req/s x{r['rps']:.2f}  cpu x{cpu}  p99 x{p99}")
    lines.append("")
    lines.append("idle RSS (MiB): " + ", ".join(f"{p} {v / 1024:.1f}" for p, v in idle_rss.items()))
    lines.append("skipped: scenario 5 (JWT auth + local rate limit + metrics) needs those features")
    text = "\n".join(lines)
    print()
    print(text)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with open(os.path.join(HERE, "results", "latest.json"), "w") as f:
        json.dump({"when": stamp, "duration_s": DURATION, "rounds": ROUNDS, "medians": table,
                   "ratios": ratios, "idle_rss_kib": idle_rss}, f, indent=2)
    with open(os.path.join(HERE, "RESULTS.md"), "a") as f:
        f.write(f"\n## {stamp} ({ROUNDS} rounds x {DURATION}s, medians)\n\n```\n{text}\n```\n")


if __name__ == "__main__":
    main()
