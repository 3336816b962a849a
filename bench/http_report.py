#!/usr/bin/python3
"""bench/http_report.py - the HTTP client benchmark of issue 15: moor's
pooled HTTP/1.1 client beside Go's net/http Transport, libcurl's multi
interface and wrk, all against one nginx (bench/nginx_http.py).

Unlike the other report scripts it runs the benchmark itself, then writes
the "## Client pool" section of docs/benchmarks.md (Markdown) to stdout.

(a) Idle pool, plain HTTP and HTTPS: each client makes --conns requests
    at once to /hold (nginx answers each after --hold-ms, so none can
    reuse another's connection), reads every answer, and holds the idle
    pool for --hold. Bytes per connection = growth of the client's own
    VmRSS from before the requests (after one warm-up request) to after
    them, divided by --conns. The connections made are checked three
    ways: the client's own count, the most established sockets to the
    port seen by `ss` while it ran, and the distinct nginx connections in
    /hold's log.
(b) Load, plain HTTP and HTTPS: --load-conns keep-alive connections
    sending GET / for --load-duration: requests/s, the client's CPU
    seconds (user + system, from wait4), and requests/s per CPU second.

Every client runs pinned to core 1, nginx (one worker) to core 0. Runs
are interleaved: run 1 of every client and scheme, then run 2, ...;
the median of --runs is shown (idle: by bytes/conn; load: by requests/s
per CPU second) and every run is listed.

moor's rows are hooks (moor_idle_cmd, moor_load_cmd below): they return
None until `moor bench http` exists, and the rows say "pending". Writes
DIR/moor_row: "measured" or "pending" (bench/run.sh writes the section to
docs/benchmarks.md only when it says measured).

    bench/http_report.py [--conns 1000] [--runs 3] [--hold 2s]
                         [--hold-ms 3000] [--load-conns 64]
                         [--load-duration 10s] [--load-runs R] [--no-load]
                         [--dir DIR] [--moor build/release/moor]

Needs build/peers/go-http-idle and build/peers/curl-idle
(bench/peers/build.sh), nginx, openssl, wrk and ss. Only the standard
library.
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from ws_report import median_by, para, thousands

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "build", "peers")
SCHEMES = ("http", "https")
TIMEOUT = 300


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def pins():
    """(server prefix, client prefix): taskset to cores 0 and 1, or
    nothing on one core."""
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", "0"], ["taskset", "-c", "1"]
    log("warning: fewer than 2 cores; not pinning")
    return [], []


PIN_SRV, PIN_GEN = pins()


# ---- moor's hooks -----------------------------------------------------------

def moor_idle_cmd(moor, url, conns, hold, ca):
    """The command of moor's idle-pool run: `moor bench http --idle-hold`.

    Its JSON has bytes_per_conn (the growth of its own VmRSS from after a
    warm-up request to after the --conns requests, / conns, as the peers
    measure it), conns_new (shown as distinct_conns) and
    accounted_per_conn (moor's own accounting, shown as live_per_conn). Its
    warm-up request goes to url too, so nginx's count for it is one more
    than the connections held. It runs interleaved with the peers
    (run_idle), pinned to the client core like them.
    """
    return ([moor, "bench", "http", "--url", url, "--conns", str(conns),
             "--idle-hold", str(hold), "--json"]
            + (["--tls-ca", ca] if ca else []))


def moor_load_cmd(moor, url, conns, duration, ca):
    """The command of moor's load run: `moor bench http --duration`.

    Its JSON has requests_per_s, errors, p99_ms and cpu_s (its own CPU
    seconds in the window, shown beside the CPU measured here the same
    way as wrk's: user + system time from wait4, run_load).
    """
    # --warmup 0: wrk has none, and the CPU of the whole process is what
    # both are measured by.
    return ([moor, "bench", "http", "--url", url, "--conns", str(conns),
             "--duration", str(duration), "--warmup", "0", "--json"]
            + (["--tls-ca", ca] if ca else []))


# ---- the server -------------------------------------------------------------

class Nginx:
    """bench/nginx_http.py, pinned to the server core, until stop()."""

    def __init__(self, hold_ms):
        self.proc = subprocess.Popen(
            PIN_SRV + [sys.executable, os.path.join(ROOT, "bench",
                                                    "nginx_http.py"),
                       "--hold-ms", str(hold_ms)],
            stdout=subprocess.PIPE, text=True)
        self.port, banner = {}, []
        deadline = time.monotonic() + 60
        for line in self.proc.stdout:
            banner.append(line.rstrip("\n"))
            m = re.match(r"nginx listening on (https?)://127\.0\.0\.1:(\d+) "
                         r"\(pid (\d+)\)", line)
            if m:
                self.port[m.group(1)] = int(m.group(2))
                self.pid = int(m.group(3))
            elif line.startswith("ca "):
                self.ca = line.split(None, 1)[1].strip()
            elif line.startswith("hold-log "):
                self.hold_log = line.split(None, 1)[1].strip()
            elif line.startswith("hold "):
                self.hold = line.split(None, 1)[1].strip()
            elif line.strip() == "ready" or time.monotonic() > deadline:
                break
        if len(self.port) != 2 or not hasattr(self, "hold_log"):
            self.stop()
            sys.exit("http_report: bench/nginx_http.py did not start:\n"
                     + "\n".join(banner))
        for line in banner:
            log("    " + line)

    def url(self, scheme, path):
        return f"{scheme}://127.0.0.1:{self.port[scheme]}{path}"

    def worker_cpu(self):
        """CPU seconds (user + system) nginx's worker has used so far."""
        kids = []
        for tid in os.listdir(f"/proc/{self.pid}/task"):
            with open(f"/proc/{self.pid}/task/{tid}/children") as f:
                kids += [int(x) for x in f.read().split()]
        if not kids:
            return None
        with open(f"/proc/{min(kids)}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is the state (field 3): utime and stime are 14 and 15.
        return (int(fields[11]) + int(fields[12])) / \
            os.sysconf("SC_CLK_TCK")

    def log_size(self):
        return os.path.getsize(self.hold_log)

    def conns_since(self, offset):
        """Distinct nginx connections in /hold's log after offset."""
        with open(self.hold_log) as f:
            f.seek(offset)
            return len({line.split()[0] for line in f if line.strip()})

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---- running a client -------------------------------------------------------

def established(port):
    """Established TCP sockets whose peer is 127.0.0.1:port (the clients'
    ends of their connections)."""
    r = subprocess.run(["ss", "-Htn", "state", "established",
                        f"( dport = :{port} )"], capture_output=True,
                       text=True)
    return sum(1 for line in r.stdout.splitlines() if line.strip())


def run(cmd, env=None, port=None):
    """Runs cmd (pinned to the client core) to the end: (stdout, stderr,
    rc, cpu seconds from wait4, most sockets established to port at
    once)."""
    out = tempfile.TemporaryFile("w+")
    err = tempfile.TemporaryFile("w+")
    p = subprocess.Popen(PIN_GEN + cmd, stdout=out, stderr=err,
                         stdin=subprocess.DEVNULL,
                         env=dict(os.environ, **(env or {})))
    peak = [0]
    done = threading.Event()

    def watch():
        while not done.wait(0.2):
            peak[0] = max(peak[0], established(port))

    t = None
    if port:
        t = threading.Thread(target=watch, daemon=True)
        t.start()
    timer = threading.Timer(TIMEOUT, p.kill)
    timer.start()
    # wait4 on the child itself: its rusage (taskset execs the client, so
    # the pid is the client's).
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    timer.cancel()
    done.set()
    if t:
        t.join()
    out.seek(0)
    err.seek(0)
    return out.read(), err.read(), p.returncode, \
        ru.ru_utime + ru.ru_stime, peak[0]


def last_json(text):
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    return None


def idle_cmds(a, ngx, scheme):
    """{client: command} of the idle runs for one scheme, in run order."""
    url = ngx.url(scheme, "/hold")
    ca = ngx.ca if scheme == "https" else None
    tls = ["--ca", ngx.ca] if ca else []
    peer = ["--url", url, "--conns", str(a.conns), "--hold", a.hold,
            "--warmup-url", ngx.url(scheme, "/")] + tls
    cmds = {}
    m = moor_idle_cmd(a.moor, url, a.conns, a.hold, ca)
    if m:
        cmds["moor"] = m
    cmds["go"] = [os.path.join(PEERS, "go-http-idle")] + peer
    cmds["curl"] = [os.path.join(PEERS, "curl-idle")] + peer
    return cmds


def run_idle(a, ngx, name, scheme, cmd, i):
    log(f"== (a) idle pool: {name}, {scheme}, {a.conns} connections, "
        f"run {i} of {a.runs}")
    offset = ngx.log_size()
    env = {"GOMAXPROCS": "1"} if name == "go" else None
    out, err, rc, _, peak = run(cmd, env, ngx.port[scheme])
    d = last_json(out)
    for line in err.splitlines():
        log("    " + line)
    if d is None or "bytes_per_conn" not in d:
        sys.exit(f"http_report: {' '.join(cmd)} exited {rc} without a "
                 f"result:\n{out}{err}")
    d["rc"] = rc
    # moor bench http's names for what the peers call these.
    d.setdefault("distinct_conns", d.get("conns_new"))
    if "accounted_per_conn" in d:
        d.setdefault("live_per_conn", d["accounted_per_conn"])
    d["ss_conns"] = peak
    d["server_conns"] = ngx.conns_since(offset)
    log(f"    {d['bytes_per_conn']} bytes/conn (VmRSS), "
        f"live {d.get('live_per_conn', '-')}, connections: client "
        f"{d.get('distinct_conns', '-')}, ss {peak}, nginx "
        f"{d['server_conns']}, errors {d.get('errors', '-')}")
    if rc != 0:
        log(f"    exit status {rc}: {d.get('error', '')}")
    with open(os.path.join(a.dir, f"{name}.{scheme}.idle{i}.json"),
              "w") as f:
        json.dump(d, f)
    return d


# ---- load -------------------------------------------------------------------

def machine_busy():
    """CPU seconds the whole machine has been busy (all but idle and
    iowait, /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def wrk_ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    if not m:
        return None
    return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000,
                                "m": 60000}[m.group(2)]


def parse_wrk(text):
    d = {"errors": 0}
    m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    d["requests_per_s"] = float(m.group(1)) if m else None
    m = re.search(r"^\s*99%\s+(\S+)", text, re.M)
    d["p99_ms"] = wrk_ms(m.group(1)) if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                  r"timeout (\d+)", text)
    if m:
        d["errors"] += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        d["errors"] += int(m.group(1))
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    if m:
        d["requests"] = int(m.group(1))
    return d


def load_cmds(a, ngx, scheme):
    url = ngx.url(scheme, "/")
    ca = ngx.ca if scheme == "https" else None
    cmds = {}
    m = moor_load_cmd(a.moor, url, a.load_conns, a.load_duration, ca)
    if m:
        cmds["moor"] = m
    cmds["wrk"] = ["wrk", "-t1", f"-c{a.load_conns}",
                   f"-d{a.load_duration}", "--latency", url]
    return cmds


def run_load(a, ngx, name, scheme, cmd, i):
    log(f"== (b) load: {name}, {scheme}, {a.load_conns} connections, "
        f"{a.load_duration}, run {i} of {a.load_runs}")
    srv0, all0 = ngx.worker_cpu(), machine_busy()
    out, err, rc, cpu, _ = run(cmd)
    srv1, all1 = ngx.worker_cpu(), machine_busy()
    if name == "wrk":
        d = parse_wrk(out)
    else:
        d = last_json(out) or {}
    for line in (out if name == "wrk" else err).splitlines():
        log("    " + line)
    if rc != 0 or not d.get("requests_per_s"):
        sys.exit(f"http_report: {' '.join(cmd)} exited {rc}:\n{out}{err}")
    d["cpu_s_wait4"] = cpu
    d["rps_per_cpu_s"] = d["requests_per_s"] / cpu if cpu > 0 else None
    d["server_cpu_s"] = (srv1 - srv0) if srv0 is not None and srv1 \
        is not None else None
    # What the rest of the machine did meanwhile: a busy neighbour slows
    # both sides down.
    d["other_cpu_s"] = max(0.0, (all1 - all0) - cpu -
                           (d["server_cpu_s"] or 0))
    srv = d["server_cpu_s"]
    log(f"    {d['requests_per_s']:.0f} requests/s, CPU {cpu:.2f} s, "
        f"{d['rps_per_cpu_s']:.0f} requests/s per CPU second, nginx CPU "
        f"{'?' if srv is None else f'{srv:.2f}'} s, other processes "
        f"{d['other_cpu_s']:.2f} s")
    with open(os.path.join(a.dir, f"{name}.{scheme}.load{i}.json"),
              "w") as f:
        json.dump(d, f)
    return d


# ---- the report -------------------------------------------------------------

LABEL = {"go": "Go net/http Transport", "curl": "libcurl multi",
         "moor": "moor", "wrk": "wrk"}


def versions():
    def out(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True,
                               timeout=10)
            return r.stdout + r.stderr
        except OSError:
            return ""
    v = {}
    m = re.search(r"go(\d[\d.]*)", out(["go", "version"]))
    v["go"] = f"Go {m.group(1)}" if m else "Go"
    m = re.search(r"([\d.]+)", out(["curl-config", "--version"]))
    v["curl"] = f"libcurl {m.group(1)}" if m else "libcurl"
    m = re.search(r"wrk ([\d.]+)", out(["wrk", "-v"]))
    v["wrk"] = f"wrk {m.group(1)}" if m else "wrk"
    m = re.search(r"nginx/([\d.]+)", out(["nginx", "-v"]))
    v["nginx"] = f"nginx {m.group(1)}" if m else "nginx"
    m = re.search(r"OpenSSL ([\d.]+)", out(["openssl", "version"]))
    v["openssl"] = f"OpenSSL {m.group(1)}" if m else "OpenSSL"
    return v


def conns_cell(d, want):
    """'1,000' when the client, ss and nginx all saw want connections,
    else the three counts, flagged."""
    seen = (d.get("distinct_conns"), d["ss_conns"], d["server_conns"])
    if all(x == want for x in seen):
        return thousands(want)
    c, s, n = ("-" if x is None else thousands(x) for x in seen)
    return f"**{c} / {s} / {n}** (client / ss / nginx)"


def idle_table(a, names, idle, out):
    out("| client | plain: bytes/conn (VmRSS) | live/conn | connections "
        "| HTTPS: bytes/conn (VmRSS) | live/conn | connections "
        "| every run, bytes/conn (plain; HTTPS) |\n"
        "|---|---:|---:|---:|---:|---:|---:|---|\n")
    for n in names:
        if n not in idle:
            out(f"| {LABEL[n]} | pending | | | pending | | | "
                "`moor bench http` does not exist yet |\n")
            continue
        cells, every = [], []
        for s in SCHEMES:
            runs = idle[n][s]
            d = median_by(runs, lambda r: r["bytes_per_conn"])
            live = d.get("live_per_conn")
            err = f" ({d['errors']} errors)" if d.get("errors") else ""
            cells.append(f"{thousands(d['bytes_per_conn'])}{err} | "
                         f"{'-' if live is None else thousands(live)} | "
                         f"{conns_cell(d, a.conns)}")
            every.append(", ".join(thousands(r["bytes_per_conn"])
                                   for r in runs))
        out(f"| {LABEL[n]} | {cells[0]} | {cells[1]} | "
            f"{'; '.join(every)} |\n")


def load_table(a, names, load, out):
    out("| client | plain: requests/s | CPU s | requests/s per CPU s | p99 "
        "| nginx CPU s | HTTPS: requests/s | CPU s | requests/s per CPU s "
        "| p99 | nginx CPU s "
        "| every run, requests/s per CPU s (plain; HTTPS) |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
    for n in names:
        if n not in load:
            out(f"| {LABEL[n]} | pending | | | | | pending | | | | | "
                "`moor bench http` does not exist yet |\n")
            continue
        cells, every = [], []
        for s in SCHEMES:
            runs = load[n][s]
            d = median_by(runs, lambda r: r["rps_per_cpu_s"])
            p99 = d.get("p99_ms")
            err = f" ({d['errors']} errors)" if d.get("errors") else ""
            srv = d.get("server_cpu_s")
            own = (f" (own: {d['cpu_s']:.2f})"
                   if isinstance(d.get("cpu_s"), (int, float)) else "")
            cells.append(f"{thousands(d['requests_per_s'])}{err} | "
                         f"{d['cpu_s_wait4']:.2f}{own} | "
                         f"{thousands(d['rps_per_cpu_s'])} | "
                         f"{'-' if p99 is None else f'{p99:.2f} ms'} | "
                         f"{'-' if srv is None else f'{srv:.2f}'}")
            every.append(", ".join(thousands(r["rps_per_cpu_s"])
                                   for r in runs))
        out(f"| {LABEL[n]} | {cells[0]} | {cells[1]} | "
            f"{'; '.join(every)} |\n")


def report(a, ngx, idle, load, cmds, v):
    out = sys.stdout.write
    pending = "moor" not in idle
    out("## Client pool (HTTP/1.1 and HTTPS)\n\n")
    if pending:
        out(para("**moor's rows are pending**: `moor bench http` does not "
                 "exist yet (bench/http_report.py, moor_idle_cmd and "
                 "moor_load_cmd). The peers' figures below are from this "
                 "run."))
    out(para(f"Measured {a.date} on {a.cpu}; {v['nginx']} "
             f"(bench/nginx_http.py: one worker, pinned to core 0) serving "
             f"every client, one client at a time, pinned to core 1. "
             f"Clients: {v['go']} net/http, {v['curl']} (Debian's "
             f"libcurl4-openssl, {v['openssl']}), {v['wrk']}. Runs "
             f"interleaved (run 1 of every client and scheme, then run 2, "
             f"...), median of {a.runs}."))
    out(para(f"Idle pool: {a.conns:,} requests at once to `/hold`, which "
             f"nginx answers after a delay ({ngx.hold}), so that each "
             f"takes a connection of its own; every body read to the end; "
             f"then the pool held idle {a.hold}. bytes/conn is the growth "
             f"of the client's VmRSS from after one warm-up request (to "
             f"`/`, its connection closed) to "
             f"after the {a.conns:,} requests, divided by {a.conns:,} "
             f"(the issue's measure). live/conn is the growth of what the "
             f"client's allocator has in use (Go: HeapAlloc + StackInuse "
             f"after a collection; libcurl: mallinfo2), read at the end "
             f"of the hold: the pool itself, without what the burst of "
             f"requests used, freed and kept. connections: the new "
             f"connections the client counted, the most established "
             f"sockets `ss` saw to the port, and the distinct nginx "
             f"connections in /hold's log, when they differ from "
             f"{a.conns:,}."))
    idle_table(a, ["moor", "go", "curl"], idle, out)
    if load:
        out("\n" + para(
            f"Load: {a.load_conns} keep-alive connections, GET / (nginx "
            f"answers `ok` at once), {a.load_duration}; median of "
            f"{a.load_runs} by requests/s per CPU second. CPU s is the "
            f"client's user + system time over its whole run (wait4), "
            f"start-up and connecting included; nginx CPU s is its "
            f"worker's over the same time (/proc/PID/stat). A client near "
            f"one CPU second per second of run is the limit of "
            f"requests/s, and requests/s per CPU second is then its "
            f"speed; one whose CPU s is well below the run's length "
            f"waited on nginx."))
        load_table(a, ["moor", "wrk"], load, out)
        other = max(r["other_cpu_s"] for n in load for s in load[n]
                    for r in load[n][s])
        if other >= 0.5:
            out("\n" + para(
                f"**Other processes were busy** during the load runs (up "
                f"to {other:.1f} CPU s in one run, from /proc/stat, beside "
                f"the client and nginx): the requests/s above are low by "
                f"an unknown amount; rerun on a quiet machine.")
                .rstrip("\n") + "\n")
    out("\nCommands (`bench/run.sh --only http-client` runs this part "
        "alone):\n\n```sh\n" + cmds + "\n```\n")


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--hold", default="2s", help="idle hold, e.g. 2s")
    ap.add_argument("--hold-ms", type=int, default=3000,
                    help="how long nginx holds each /hold request")
    ap.add_argument("--load-conns", type=int, default=64)
    ap.add_argument("--load-duration", default="10s")
    ap.add_argument("--load-runs", type=int, help="default: --runs")
    ap.add_argument("--no-load", action="store_true")
    ap.add_argument("--dir", help="where the runs' JSON go (kept); "
                    "default a temporary directory, removed")
    ap.add_argument("--moor", default=os.path.join(ROOT, "build", "release",
                                                   "moor"))
    ap.add_argument("--date", default=time.strftime("%Y-%m-%d",
                                                    time.gmtime()))
    ap.add_argument("--cpu")
    a = ap.parse_args()
    if a.load_runs is None:
        a.load_runs = a.runs
    if a.cpu is None:
        model = "?"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        a.cpu = f"{model} ({os.cpu_count()} cores)"
    keep = a.dir is not None
    a.dir = a.dir or tempfile.mkdtemp(prefix="moor-http-bench.")
    os.makedirs(a.dir, exist_ok=True)
    for tool in ("nginx", "openssl", "ss") + (() if a.no_load else ("wrk",)):
        if not shutil.which(tool):
            sys.exit(f"http_report: {tool} not found")
    for peer in ("go-http-idle", "curl-idle"):
        if not os.access(os.path.join(PEERS, peer), os.X_OK):
            sys.exit(f"http_report: build/peers/{peer} not found "
                     "(bench/peers/build.sh)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < a.conns + 100:
        sys.exit(f"http_report: RLIMIT_NOFILE {hard} < {a.conns + 100}")

    ngx = Nginx(a.hold_ms)
    idle, load = {}, {}
    try:
        for i in range(1, a.runs + 1):
            for s in SCHEMES:
                for name, cmd in idle_cmds(a, ngx, s).items():
                    d = run_idle(a, ngx, name, s, cmd, i)
                    idle.setdefault(name, {}).setdefault(s, []).append(d)
        if not a.no_load:
            for i in range(1, a.load_runs + 1):
                for s in SCHEMES:
                    for name, cmd in load_cmds(a, ngx, s).items():
                        d = run_load(a, ngx, name, s, cmd, i)
                        load.setdefault(name, {}).setdefault(s, []).append(d)
        gen = " ".join(PIN_GEN) + " " if PIN_GEN else ""
        srv = " ".join(PIN_SRV) + " " if PIN_SRV else ""
        lines = ["bench/peers/build.sh",
                 f"{srv}bench/nginx_http.py --hold-ms {a.hold_ms}  "
                 "# prints its ports and the CA's path"]
        for s in SCHEMES:
            for name, cmd in idle_cmds(a, ngx, s).items():
                c = " ".join(cmd).replace(ROOT + "/", "")
                c = c.replace(ngx.ca, "ca.pem")
                c = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", c)
                env = "GOMAXPROCS=1 " if name == "go" else ""
                lines.append(f"{env}{gen}{c}  # x {a.runs}")
        if load:
            for s in SCHEMES:
                for name, cmd in load_cmds(a, ngx, s).items():
                    c = " ".join(cmd).replace(ROOT + "/", "")
                    c = c.replace(ngx.ca, "ca.pem")
                    c = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", c)
                    lines.append(f"{gen}{c}  # x {a.load_runs}")
        with open(os.path.join(a.dir, "moor_row"), "w") as f:
            f.write("measured\n" if "moor" in idle else "pending\n")
        report(a, ngx, idle, load, "\n".join(lines), versions())
    finally:
        ngx.stop()
        if not keep:
            shutil.rmtree(a.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
