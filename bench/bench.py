"""Runs the proxies in turn against one nginx backend, pinned: load generator on core 0, proxy and
backend on core 1. Interleaves the peers over several rounds and reports medians and ratios.

Called by bench/run (which installs the tools, builds Gantry in release and the floor relay). Env: BENCH_DURATION
(seconds per measurement, default 8), BENCH_ROUNDS (default 3), BENCH_WARMUP (seconds, default 2),
BENCH_RECORD=0 (print only: leave results/latest.json and RESULTS.md alone)."""

import base64
import datetime
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
RUN = os.path.join(HERE, "tmp")
# BENCH_GANTRY=/path/to/gantry benches another build (an older one, for a same-run comparison).
GANTRY = os.environ.get("BENCH_GANTRY") or os.path.join(HERE, "..", "target", "release", "gantry")
DURATION = int(os.environ.get("BENCH_DURATION", "8"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "2"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOAD_CORE, SERVER_CORE = "0", "1"
RECORD = os.environ.get("BENCH_RECORD", "1") != "0"  # BENCH_RECORD=0: print only, write nothing
BACKEND_PORT = 18100

PEERS = {
    # name: (command or None, http1 port, h2c port or None)
    "direct": (None, 18100, None),
    "nginx": (["nginx", "-p", HERE + "/", "-c", "nginx-proxy.conf"], 18101, 18111),
    "haproxy": (["haproxy", "-f", "haproxy.cfg"], 18102, 18112),
    "gantry": ([GANTRY, "run", "-c", "gantry.yaml"], 18103, 18103),
    # the floor (floor/relay.c, built by bench/run): a byte pipe with a proxy's syscalls per
    # request and no HTTP work, so its CPU per request is the kernel's share; HTTP/1.1 only
    "floor": ([os.path.join(RUN, "relay"), "18104", str(BACKEND_PORT)], 18104, None),
    # scenario 5: the same Gantry with JWT (RS256) + a local rate limit + metrics on the route
    "gantry+": ([GANTRY, "run", "-c", "gantry-full.yaml"], 18105, None),
}
FULL_PEER = "gantry+"
FULL_SCENARIO = ("jwt-rl-c50", "GET with an RS256 bearer token, local rate limit, metrics; 50 connections")
KEYS_DIR = os.path.join(HERE, "..", "tests", "fixtures", "jwt")

SCENARIOS = [
    ("get-c50", "GET, 50 connections"),
    ("get-c200", "GET, 200 connections"),
    ("post-1k-c50", "POST 1 KiB, 50 connections"),
    ("h2-c50", "HTTP/2 (h2c) GET, 50 connections x 10 streams"),
]


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rs256_token():
    """A bearer token signed with the test key (openssl CLI; no Python packages needed)."""
    claims = {"iss": "https://login.bench/", "aud": "bench", "sub": "bench-user",
              "scope": "bench:read", "exp": int(time.time()) + 86400}
    signing_input = f"{b64(json.dumps({'alg': 'RS256', 'typ': 'JWT'}).encode())}." \
                    f"{b64(json.dumps(claims).encode())}"
    signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign",
                                os.path.join(KEYS_DIR, "rsa1.key.pem")],
                               input=signing_input.encode(), capture_output=True, check=True).stdout
    return f"{signing_input}.{b64(signature)}"


TOKEN = None  # set in main(); sent by the scenario-5 peer's checks and load


def pinned(cmd, core):
    return ["taskset", "-c", core] + cmd


def start(name, cmd, port):
    """Starts a server pinned to the server core, in its own process group, and waits until `port`
    answers `GET /` with the backend's body (so a proxy is checked end to end)."""
    log = open(os.path.join(RUN, f"{name}.log"), "w")
    env = dict(os.environ)
    with open(os.path.join(KEYS_DIR, "rsa1.pub.pem")) as f:
        env["BENCH_JWT_PEM"] = f.read().strip()
    proc = subprocess.Popen(
        pinned(cmd, SERVER_CORE), cwd=HERE, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True, env=env,
    )
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            sys.exit(f"{name} exited at start (code {proc.returncode}); see bench/tmp/{name}.log")
        try:
            check = urllib.request.Request(f"http://127.0.0.1:{port}/")
            if name == FULL_PEER:
                check.add_header("Authorization", f"Bearer {TOKEN}")
            with urllib.request.urlopen(check, timeout=1) as resp:
                if resp.status == 200 and resp.read() == b"hello\n":
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop(proc)
            sys.exit(f"{name} did not serve GET / on port {port} within 10s; see bench/tmp/{name}.log")
        time.sleep(0.1)
    return proc


def ports_free():
    busy = []
    for _, port, h2_port in PEERS.values():  # the backend's port is the "direct" peer's
        for p in {port, h2_port} - {None}:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no conflict
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    busy.append(p)
    if busy:
        sys.exit(f"ports already in use: {busy} (a previous run left servers behind?)")


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the servers


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
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(port, connections, script=None, duration=DURATION, token=None):
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    if script:
        cmd += ["-s", os.path.join(HERE, script)]
    cmd.append(f"http://127.0.0.1:{port}/")
    out = subprocess.run(pinned(cmd, LOAD_CORE), capture_output=True, text=True).stdout
    try:
        return parse_wrk(out)
    except (AttributeError, ValueError) as e:
        with open(os.path.join(RUN, "wrk-unparsed.txt"), "w") as f:
            f.write(out)
        raise RuntimeError(f"cannot parse wrk output ({e}); saved in bench/tmp/wrk-unparsed.txt") from e


def parse_wrk(out):
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        # anchored: "+/- Stdev" columns such as "80.99%" must not be taken for the distribution
        "p50_ms": to_ms(re.search(r"^\s+50%\s+(\S+)$", out, re.M).group(1)),
        "p99_ms": to_ms(re.search(r"^\s+99%\s+(\S+)$", out, re.M).group(1)),
        "errors": (int(errors.group(1)) if errors else 0)
        + (sum(int(g) for g in socket_errors.groups()) if socket_errors else 0),
    }


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run_h2load(port, duration=DURATION):
    log = os.path.join(RUN, "h2load.log")
    cmd = ["h2load", "-c50", "-m10", "-t1", f"-D{duration}", f"--log-file={log}",
           f"http://127.0.0.1:{port}/"]
    out = subprocess.run(pinned(cmd, LOAD_CORE), capture_output=True, text=True).stdout
    with open(log) as f:  # one line per request: start (us since epoch), status, duration (us)
        durations = sorted(int(line.split()[2]) / 1000 for line in f if line.strip())
    os.unlink(log)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    rps = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)
    succeeded = int(done.group(2)) if done else 0
    return {
        "requests": succeeded,
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50_ms": percentile(durations, 0.50),
        "p99_ms": percentile(durations, 0.99),
        "mean_ms": to_ms(mean.group(1)) if mean else None,
        "errors": (int(done.group(1)) - succeeded) if done else 1,
    }


def measure(scenario, port, h2_port, pids, backend_pids):
    if scenario == "h2-c50" and h2_port is None:
        return None
    before = cpu_ticks(pids)
    backend_before = cpu_ticks(backend_pids)
    if scenario == "get-c50":
        result = run_wrk(port, 50)
    elif scenario == "get-c200":
        result = run_wrk(port, 200)
    elif scenario == "post-1k-c50":
        result = run_wrk(port, 50, "post-1k.lua")
    elif scenario == FULL_SCENARIO[0]:
        result = run_wrk(port, 50, token=TOKEN)
    else:
        result = run_h2load(h2_port)
    ticks = cpu_ticks(pids) - before
    backend_ticks = cpu_ticks(backend_pids) - backend_before
    if pids and result["requests"]:
        result["cpu_us_per_req"] = ticks * 1e6 / CLK_TCK / result["requests"]
    if result["requests"]:
        result["backend_cpu_us_per_req"] = backend_ticks * 1e6 / CLK_TCK / result["requests"]
    result["rss_kib"] = rss_kib(pids) if pids else None
    return result


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main():
    global TOKEN
    TOKEN = rs256_token()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    ports_free()
    backend = start("backend", ["nginx", "-p", HERE + "/", "-c", "nginx-backend.conf"], BACKEND_PORT)
    backend_pids = group_pids(backend)
    samples = {}  # (peer, scenario) -> [result], one per round
    idle_rss = {}
    try:
        for round_no in range(ROUNDS):
            # Interleave the peers; rotate the order each round so none always goes first.
            order = list(PEERS)
            order = order[round_no % len(order):] + order[:round_no % len(order)]
            for peer in order:
                cmd, port, h2_port = PEERS[peer]
                proc = start(peer, cmd, port) if cmd else None
                try:
                    pids = group_pids(proc)
                    if pids and peer not in idle_rss:
                        idle_rss[peer] = rss_kib(pids)
                    full = peer == FULL_PEER
                    run_wrk(port, 50, duration=WARMUP, token=TOKEN if full else None)  # warm-up
                    for scenario, _ in ([FULL_SCENARIO] if full else SCENARIOS):
                        result = measure(scenario, port, h2_port, pids, backend_pids)
                        if result is not None:
                            samples.setdefault((peer, scenario), []).append(result)
                            cpu = result.get("cpu_us_per_req")
                            print(f"round {round_no + 1}/{ROUNDS} {peer:8} {scenario:12} "
                                  f"{result['rps']:>9.0f} req/s  p99 {fmt(result['p99_ms'], '.2f')} ms  "
                                  f"cpu {fmt(cpu, '.1f')} us/req  errors {result['errors']}", flush=True)
                finally:
                    stop(proc)
    finally:
        stop(backend)
    report(samples, idle_rss)


def fmt(value, spec, width=0):
    return (format(value, spec) if value is not None else "-").rjust(width)


KEYS = ["rps", "p50_ms", "p99_ms", "mean_ms", "cpu_us_per_req", "backend_cpu_us_per_req", "rss_kib"]


def report(samples, idle_rss):
    table = {}
    for (peer, scenario), results in samples.items():
        row = {key: median([r.get(key) for r in results]) for key in KEYS}
        rps = [r["rps"] for r in results]
        row["rps_spread"] = (max(rps) - min(rps)) / row["rps"] if row["rps"] else None
        row["errors"] = sum(r["errors"] for r in results)  # total over the rounds, not a median
        row["rounds"] = len(results)
        table.setdefault(scenario, {})[peer] = row

    lines = []
    header = (f"{'scenario':12} {'peer':8} {'req/s':>8} {'spread':>6} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'CPU us/req':>10} {'backend':>7} {'RSS MiB':>7} {'errors':>6}")
    lines.append(header)
    lines.append("-" * len(header))
    ratios = {}
    for scenario, _ in SCENARIOS + [FULL_SCENARIO]:
        peers = table.get(scenario, {})
        for peer in PEERS:
            r = peers.get(peer)
            if not r:
                continue
            rss = r["rss_kib"] / 1024 if r["rss_kib"] else None
            spread = f"{r['rps_spread'] * 100:.0f}%" if r["rps_spread"] is not None else "-"
            lines.append(
                f"{scenario:12} {peer:8} {fmt(r['rps'], '.0f', 8)} {spread:>6} {fmt(r['p50_ms'], '.2f', 7)} "
                f"{fmt(r['p99_ms'], '.2f', 7)} {fmt(r['cpu_us_per_req'], '.1f', 10)} "
                f"{fmt(r['backend_cpu_us_per_req'], '.1f', 7)} {fmt(rss, '.1f', 7)} {r['errors']:>6}")
        for subject, other in [("gantry", "nginx"), ("gantry", "haproxy"), ("floor", "nginx")]:
            g, o = peers.get(subject), peers.get(other)
            if g and o and o["rps"]:
                div = lambda a, b, g=g, o=o: (g[a] / o[b]) if g.get(a) and o.get(b) else None
                ratios.setdefault(scenario, {})[f"{subject}/{other}"] = {
                    "rps": div("rps", "rps"),
                    "cpu_per_req": div("cpu_us_per_req", "cpu_us_per_req"),
                    "p50": div("p50_ms", "p50_ms"),
                    "p99": div("p99_ms", "p99_ms"),
                    "rss": div("rss_kib", "rss_kib"),
                }
        lines.append("")
    lines.append("ratios to a peer (of the medians above; req/s: higher is better, the rest: lower is better);")
    lines.append("floor/nginx is how far below nginx any HTTP/1.1 proxy could go here (see floor/relay.c)")
    lines.append(f"  {'scenario':12} {'ratio':16} {'req/s':>6} {'CPU/req':>7} {'p50':>6} {'p99':>6} {'RSS':>6}")
    for scenario, by_peer in ratios.items():
        for name, r in by_peer.items():
            lines.append(f"  {scenario:12} {name:16} {fmt(r['rps'], '.2f', 6)} "
                         f"{fmt(r['cpu_per_req'], '.2f', 7)} {fmt(r['p50'], '.2f', 6)} "
                         f"{fmt(r['p99'], '.2f', 6)} {fmt(r['rss'], '.2f', 6)}")
    lines.append("")
    lines.append("idle RSS after start-up and one request (MiB): "
                 + ", ".join(f"{p} {v / 1024:.1f}" for p, v in idle_rss.items()))
    full = table.get(FULL_SCENARIO[0], {}).get(FULL_PEER)
    plain = table.get("get-c50", {})
    if full:
        parts = []
        for other in ["gantry", "nginx", "haproxy"]:
            o = plain.get(other)
            if o and o.get("rps"):
                cpu = (full["cpu_us_per_req"] / o["cpu_us_per_req"]
                       if full.get("cpu_us_per_req") and o.get("cpu_us_per_req") else None)
                parts.append(f"vs plain {other}: req/s {full['rps'] / o['rps']:.2f}, CPU/req {fmt(cpu, '.2f')}")
                ratios.setdefault(FULL_SCENARIO[0], {})[f"gantry+/{other}"] = {
                    "rps": full["rps"] / o["rps"], "cpu_per_req": cpu}
        lines.append("scenario 5 (Gantry with JWT RS256 + local rate limit + metrics, GET c=50) "
                     + "; ".join(parts))
    text = "\n".join(lines)
    print()
    print(text)
    if not RECORD:
        return
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rev = git_rev()
    with open(os.path.join(HERE, "results", "latest.json"), "w") as f:
        json.dump({"when": stamp, "gantry_commit": rev, "duration_s": DURATION, "rounds": ROUNDS,
                   "tools": tool_versions(), "scenarios": dict(SCENARIOS + [FULL_SCENARIO]), "medians": table,
                   "ratios": ratios, "idle_rss_kib": idle_rss}, f, indent=2)
        f.write("\n")
    with open(os.path.join(HERE, "RESULTS.md"), "a") as f:
        f.write(f"\n## {stamp}, Gantry {rev} ({ROUNDS} rounds x {DURATION}s, medians)\n\n```\n{text}\n```\n")
    print(f"\nwrote bench/results/latest.json, appended to bench/RESULTS.md")


def git_rev():
    def git(*args):
        return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True).stdout.strip()
    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    return rev + ("+dirty" if git("status", "--porcelain", "--", "../src", "../Cargo.toml", "../Cargo.lock") else "")


def tool_versions():
    def first_line(cmd):
        r = subprocess.run(cmd, capture_output=True, text=True)
        return (r.stdout + r.stderr).strip().splitlines()[0] if (r.stdout + r.stderr).strip() else None
    return {"nginx": first_line(["nginx", "-v"]), "haproxy": first_line(["haproxy", "-v"]),
            "wrk": first_line(["wrk", "-v"]), "h2load": first_line(["h2load", "--version"]),
            "kernel": os.uname().release, "cpus": os.cpu_count()}


if __name__ == "__main__":
    main()
