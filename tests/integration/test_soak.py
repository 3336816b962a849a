"""`moor soak`: each of the deliberately leaking servers of tests/soak/
(bytes per connection, an fd every few connections, bytes only under slow
readers) is caught within a few rounds and named by the right series;
moor itself (echo, publish/subscribe with --pub-url over WebSocket and
Server-Sent Events, HTTP keep-alive, wss:// echo on --tls-listen with a
self-signed certificate, pub/sub over --tcp-listen's length-prefixed
frames) and a server that keeps nothing are cleared, and so is a
garbage-collected one whose heap breathes (node's `ws`, tests/soak/
gc_echo.js); a server that dies mid-run is reported with its round and the samples taken are kept;
--help explains every flag with its default; usage errors exit 2.

Every run is short (8 rounds of 10 connections, 100 ms holds), a few
seconds each: the hours-long soak is `moor soak` by hand.
"""

import csv
import json
import xml.etree.ElementTree as ET
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import shutil

from conftest import (NODE_DIR, TEST_AUTH, auth_mode_token, base_env,
                      is_debug_build, moor_bin, node_bin, run_moor)

LEAKY = Path(__file__).resolve().parents[1] / "soak" / "leaky_ws.py"
GC_ECHO = Path(__file__).resolve().parents[1] / "soak" / "gc_echo.js"

# Short: 2 warm-up rounds and 6 measured ones.
SHORT = ["--rounds", "8", "--warmup", "2", "--conns", "10", "--messages",
         "5", "--hold", "100ms", "--settle", "100ms"]


class Leaky:
    """tests/soak/leaky_ws.py on a free port."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [sys.executable, str(LEAKY), "--port", "0", *args],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"port (\d+)", line)
        assert m, f"leaky_ws.py did not start: {line!r}"
        self.port = int(m.group(1))
        self.url = f"ws://127.0.0.1:{self.port}/"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        self.proc.stdout.close()


@pytest.fixture
def leaky():
    started = []

    def start(*args):
        s = Leaky(*args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def soak(*args, timeout=40):
    return run_moor(["soak"] + [str(a) for a in args], timeout=timeout)


def summary(out):
    return json.loads((out / "summary.json").read_text())


def calls(summ):
    return {k: v["call"] for k, v in summ["series"].items()}


def samples(out):
    with open(out / "samples.csv") as f:
        return list(csv.DictReader(f))


MEMORY = ("rss_bytes", "rss_anon_bytes", "pss_bytes", "private_bytes")


def moor_env():
    """ASan keeps freed memory in a quarantine (256 MiB by default): the
    debug build's RSS grows round after round while moor's accounted
    bytes stay flat, which a soak rightly calls growth (with a note that
    it is outside moor's accounting). Without the quarantine the
    sanitizers still check everything else."""
    if not is_debug_build():
        return None
    return {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1:"
                            "quarantine_size_mb=0"}


def mem_flags(srv):
    """--mem-url where /debug/mem is (the admin listener under auth)."""
    if srv.admin_port:
        return ["--mem-url", f"http://127.0.0.1:{srv.admin_port}/debug/mem"]
    return []


def plot_panels(out):
    """{series: (call, points in its line, has a fit line)} of plot.svg,
    which must be well-formed SVG; and report.html, which must carry the
    same plot, the verdict and the command."""
    ns = {"s": "http://www.w3.org/2000/svg"}
    root = ET.parse(out / "plot.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    panels = {}
    for g in root.findall("s:g", ns):
        line = g.find("s:polyline", ns)
        panels[g.get("data-series")] = (
            g.get("data-call"), len(line.get("points").split()),
            g.find("s:line", ns) is not None)
    html = (out / "report.html").read_text()
    assert html.startswith("<!doctype html>")
    assert html.count("<svg ") == 1 and "http-equiv" not in html
    assert not re.search(r"(src|href)=", html), "no external reference"
    return panels, html


def assert_moor_cleared(r, out, srv, per_round, url=None):
    assert r.returncode == 0, r.stdout + r.stderr
    s = summary(out)
    assert s["status"] in ("no leak", "retention"), s
    assert s["pid"] == srv.proc.pid
    # moor's own accounting was read, and it did not move but by a few
    # bytes (the per-address table forgets 127.0.0.1 once its bucket has
    # refilled: a matter of timing, 16 bytes).
    assert s["moor"] is True
    assert s["series"]["live_bytes"]["call"] == "flat"
    assert abs(s["series"]["live_bytes"]["growth"]) < 4096, s
    assert "leak" not in calls(s).values()
    rows = samples(out)
    assert [int(x["round"]) for x in rows] == list(range(1, 9))
    # Every round really did its traffic.
    for x in rows:
        assert int(x["opened"]) == 10 and int(x["received"]) == per_round
        assert int(x["faults"]) == 4
        assert int(x["live_bytes"]) > 0
    assert re.search(r"^round 8 .*flat so far", r.stderr, re.M), r.stderr
    assert "verdict: no leak" in r.stdout
    panels, html = plot_panels(out)
    assert panels["live_bytes"][:2] == ("flat", 8), panels
    assert panels["rss_bytes"][1] == 8 and panels["fds"][0] == "flat"
    assert '<h1 id="verdict">moor soak: no leak' in html
    assert (url or f"--url ws://127.0.0.1:{srv.port}/") in html


@pytest.mark.wall(60)
def test_moor_echo_is_cleared(moor, tmp_path):
    srv = moor(env=moor_env())
    out = tmp_path / "out"
    r = soak("--url", f"ws://127.0.0.1:{srv.port}/echo", *SHORT,
             *mem_flags(srv), "--out", out)
    assert_moor_cleared(r, out, srv, per_round=10 * 5)


@pytest.mark.wall(60)
def test_moor_pubsub_is_cleared(moor, tmp_path):
    srv = moor(env=moor_env())
    out = tmp_path / "out"
    base = f"ws://127.0.0.1:{srv.port}"
    # MOOR_TEST_AUTH mode: /sub and /pub want a token.
    q = f"?token={auth_mode_token()}" if TEST_AUTH else ""
    r = soak("--url", f"{base}/sub/soak{q}", "--pub-url",
             f"{base}/pub/soak{q}",
             *SHORT, *mem_flags(srv), "--out", out)
    # Five messages published a round, each to all ten subscribers.
    assert_moor_cleared(r, out, srv, per_round=10 * 5)


@pytest.mark.wall(60)
def test_moor_sse_is_cleared(moor, tmp_path):
    srv = moor(env=moor_env())
    out = tmp_path / "out"
    q = f"?token={auth_mode_token()}" if TEST_AUTH else ""
    r = soak("--url", f"http://127.0.0.1:{srv.port}/sub/soak{q}", "--pub-url",
             f"ws://127.0.0.1:{srv.port}/pub/soak{q}", *SHORT,
             *mem_flags(srv), "--out", out)
    # Five messages published a round, each a data: line at ten
    # Server-Sent Events subscribers.
    assert_moor_cleared(r, out, srv, per_round=10 * 5,
                        url=f"--url http://127.0.0.1:{srv.port}/sub/soak")


@pytest.mark.wall(60)
def test_moor_http_keepalive_is_cleared(moor, tmp_path):
    srv = moor(env=moor_env())
    out = tmp_path / "out"
    r = soak("--url", f"http://127.0.0.1:{srv.port}/healthz", *SHORT,
             *mem_flags(srv), "--out", out)
    # Five GETs on each of ten keep-alive connections.
    assert_moor_cleared(r, out, srv, per_round=10 * 5,
                        url=f"--url http://127.0.0.1:{srv.port}/healthz")


HTTPS_BANNER_RE = re.compile(rb"https://127\.0\.0\.1:(\d+)")
TCP_BANNER_RE = re.compile(rb"tcp://127\.0\.0\.1:(\d+)")


def banner_port(srv, regex):
    m = regex.search(srv.out_path.read_bytes())
    assert m, f"no such line in the banner:\n{srv.stdout_text()}"
    return int(m.group(1))


def explicit_mem_url(srv):
    """wss:// and tcp:// URLs speak no plain HTTP: --mem-url is given."""
    return ["--mem-url",
            f"http://127.0.0.1:{srv.admin_port or srv.port}/debug/mem"]


def self_signed(d):
    """A P-256 certificate for 127.0.0.1 (its own CA), made by openssl."""
    exe = shutil.which("openssl")
    if not exe:
        pytest.fail("the openssl command is not installed", pytrace=False)
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run([exe, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=30)
    return cert, key


@pytest.mark.wall(60)
def test_moor_wss_echo_is_cleared(moor, tmp_path):
    cert, key = self_signed(tmp_path)
    # The handshake fault (a ClientHello cut short, then an RST) is
    # closed at once (it was held until --handshake-timeout, with the
    # loop spinning: docs/soak.md), so the default 10 s is kept here.
    srv = moor("--tls-listen", "127.0.0.1:0", "--tls-cert", str(cert),
               "--tls-key", str(key), env=moor_env())
    port = banner_port(srv, HTTPS_BANNER_RE)
    out = tmp_path / "out"
    url = f"wss://127.0.0.1:{port}/echo"
    short = SHORT[:SHORT.index("--settle")] + ["--settle", "700ms"]
    r = soak("--url", url, "--tls-ca", cert, *short, *explicit_mem_url(srv),
             "--out", out)
    assert_moor_cleared(r, out, srv, per_round=10 * 5, url=f"--url {url}")
    # The TLS connections were moor's: its tls tag held their state.
    assert max(int(x["live_bytes_tls"]) for x in samples(out)) > 0
    # Without the CA the certificate is refused: nothing opens.
    r = soak("--url", url, *SHORT, "--mem-url", "none")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "lost the target in round 1" in r.stderr


@pytest.mark.wall(60)
def test_moor_tcp_frames_pubsub_is_cleared(moor, tmp_path):
    if TEST_AUTH:
        pytest.skip("moor soak sends no AUTH frame over TCP")
    srv = moor("--tcp-listen", "127.0.0.1:0", env=moor_env())
    port = banner_port(srv, TCP_BANNER_RE)
    out = tmp_path / "out"
    url = f"tcp://127.0.0.1:{port}/soak"
    r = soak("--url", url, "--pub-url", url, *SHORT, *explicit_mem_url(srv),
             "--out", out)
    # Five frames published a round over TCP, each to ten TCP subscribers.
    assert_moor_cleared(r, out, srv, per_round=10 * 5, url=f"--url {url}")


@pytest.mark.wall(60)
def test_gc_node_ws_peer_is_not_called_a_leak(tmp_path):
    """node's `ws` (tests/soak/gc_echo.js) keeps nothing: 20 rounds of 20
    connections, 5 of them warm-up, and no series may be called a leak.
    Left alone, V8 sizes its heap over the first minutes of load (RSS
    climbs in steps for a minute or more, docs/soak.md) and a short run
    cannot tell that from a leak; here a 1 MiB young generation and a
    full collection every 300 ms keep its heap at its working size within
    the warm-up. The breathing itself (a sawtooth whatever its phase) is
    tests/unit/test_soak_stats.c's; the bench peers' long runs are in
    docs/soak.md."""
    env = dict(os.environ, NODE_PATH=str(NODE_DIR / "node_modules"))
    p = subprocess.Popen([node_bin(), "--expose-gc", "--max-semi-space-size=1",
                          str(GC_ECHO), "--gc-every", "300"], env=env,
                         stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         text=True)
    try:
        line = p.stdout.readline()
        m = re.match(r"port (\d+)", line)
        assert m, f"gc_echo.js did not start: {line!r}"
        out = tmp_path / "out"
        r = soak("--url", f"ws://127.0.0.1:{m.group(1)}/", "--pid", p.pid,
                 "--rounds", "20", "--warmup", "5", "--conns", "20",
                 "--messages", "10", "--size", "4KiB", "--hold", "100ms",
                 "--settle", "200ms", "--out", out)
    finally:
        p.kill()
        p.wait(timeout=5)
        p.stdout.close()
    assert r.returncode == 0, r.stdout + r.stderr
    s = summary(out)
    assert s["moor"] is False and s["pid"] == p.pid
    assert "leak" not in calls(s).values(), s
    # It really echoed: every message of every round came back.
    assert all(int(x["received"]) == 200 for x in samples(out))
    assert "verdict: no leak" in r.stdout


@pytest.mark.wall(60)
def test_http_bytes_per_connection_caught(leaky, tmp_path):
    srv = leaky("--leak", "bytes", "--leak-bytes", "65536")
    out = tmp_path / "out"
    r = soak("--url", f"http://127.0.0.1:{srv.port}/", *SHORT, "--out", out)
    assert r.returncode == 1, r.stdout + r.stderr
    c = calls(summary(out))
    assert c["rss_bytes"] == "leak" and c["fds"] == "flat"
    assert all(int(x["received"]) == 50 for x in samples(out))


@pytest.mark.wall(60)
def test_a_server_that_keeps_nothing_is_cleared(leaky, tmp_path):
    srv = leaky("--leak", "none")
    out = tmp_path / "out"
    r = soak("--url", srv.url, *SHORT, "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    s = summary(out)
    assert s["moor"] is False  # no /debug/mem there
    assert "live_bytes" not in s["series"]
    assert "leak" not in calls(s).values()


@pytest.mark.wall(60)
def test_bytes_per_connection_caught(leaky, tmp_path):
    srv = leaky("--leak", "bytes", "--leak-bytes", "65536")
    out = tmp_path / "out"
    r = soak("--url", srv.url, *SHORT, "--out", out)
    assert r.returncode == 1, r.stdout + r.stderr
    s = summary(out)
    c = calls(s)
    assert s["status"] == "leak"
    assert c["rss_bytes"] == "leak" and c["private_bytes"] == "leak"
    assert c["fds"] == "flat" and c["threads"] == "flat"
    # 14 connections a round (10 + 4 faults) at 64 KiB: the fitted slope
    # per connection cycle is near 64 KiB.
    per = s["series"]["rss_bytes"]["per_conn_cycle"]
    assert 40_000 < per < 100_000, per
    assert "verdict: LEAK in rss_bytes" in r.stdout
    # The picture: a panel per series, the leaking one with its fitted
    # line; the page says LEAK and marks the row.
    panels, html = plot_panels(out)
    assert panels["rss_bytes"] == ("leak", 8, True), panels
    assert panels["fds"][0] == "flat"
    assert '<h1 id="verdict">moor soak: LEAK in rss_bytes' in html
    assert '<td class="leak">leak</td>' in html


@pytest.mark.wall(60)
def test_rise_then_plateau_is_retention_not_leak(leaky, tmp_path):
    # 128 KiB for each of the first 56 connections (4 rounds of 14), then
    # nothing: RSS climbs through round 4 and stays.
    srv = leaky("--leak", "bytes", "--leak-bytes", "131072", "--until", "56")
    out = tmp_path / "out"
    r = soak("--url", srv.url, *SHORT, "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    s = summary(out)
    assert s["status"] == "retention", s
    assert calls(s)["rss_bytes"] == "retention"
    rows = samples(out)
    assert int(rows[-1]["rss_bytes"]) - int(rows[0]["rss_bytes"]) > 4 << 20
    assert "allocator retention" in r.stdout


@pytest.mark.wall(60)
def test_fd_every_five_connections_caught(leaky, tmp_path):
    srv = leaky("--leak", "fd", "--every", "5")
    out = tmp_path / "out"
    r = soak("--url", srv.url, *SHORT, "--out", out)
    assert r.returncode == 1, r.stdout + r.stderr
    s = summary(out)
    c = calls(s)
    assert c["fds"] == "leak"
    for m in MEMORY:
        assert c[m] != "leak", (m, s["series"][m])
    # 14 connections a round, one fd per 5: 2.8 a round.
    assert 2.0 <= s["series"]["fds"]["slope_per_round"] <= 3.5
    rows = samples(out)
    assert int(rows[-1]["fds"]) > int(rows[0]["fds"]) + 10


@pytest.mark.wall(60)
def test_slow_reader_leak_caught_only_with_slow_readers(leaky, tmp_path):
    srv = leaky("--leak", "slow")
    # Every fault but the slow reader: nothing is kept.
    out = tmp_path / "other"
    r = soak("--url", srv.url, *SHORT, "--faults", "vanish,half,handshake",
             "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    # Two slow readers a round: the echoes they never read stay.
    out = tmp_path / "slow"
    r = soak("--url", srv.url, *SHORT, "--faults", "slow", "--fault-conns",
             "2", "--out", out)
    assert r.returncode == 1, r.stdout + r.stderr
    c = calls(summary(out))
    assert c["rss_bytes"] == "leak", summary(out)


@pytest.mark.wall(60)
def test_target_dies_mid_run(leaky, tmp_path):
    srv = leaky("--leak", "none")
    out = tmp_path / "out"
    p = start_soak("--url", srv.url, "--rounds", "50", "--warmup", "2",
                   "--conns", "5", "--hold", "100ms", "--settle", "100ms",
                   "--out", out)
    # Kill the server once three rounds are in the CSV.
    wait_rows(out, 3)
    srv.proc.send_signal(signal.SIGKILL)
    stdout, stderr = p.communicate(timeout=30)
    assert p.returncode == 2, stdout + stderr
    m = re.search(r"lost the target in round (\d+)", stderr)
    assert m, stderr
    lost_round = int(m.group(1))
    rows = samples(out)
    assert len(rows) == lost_round - 1 >= 3
    s = summary(out)
    assert s["status"] == "target lost" and s["exit"] == 2
    assert f"round {lost_round}" in s["lost"]


def start_soak(*args):
    return subprocess.Popen(
        [str(moor_bin()), "soak", *[str(a) for a in args]], env=base_env(),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def wait_rows(out, n, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (out / "samples.csv").exists() and len(samples(out)) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} rounds in {timeout} s")


@pytest.mark.wall(60)
def test_interrupted_still_judges(leaky, tmp_path):
    srv = leaky("--leak", "fd", "--every", "5")
    out = tmp_path / "out"
    p = start_soak("--url", srv.url, "--rounds", "1000", "--warmup", "2",
                   "--conns", "10", "--hold", "100ms", "--settle", "100ms",
                   "--out", out)
    wait_rows(out, 7)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=30)
    assert p.returncode == 130, stdout + stderr
    assert "interrupted after round" in stderr
    # The rounds it had are judged: the fd leak is named.
    s = summary(out)
    assert s["series"]["fds"]["call"] == "leak"
    assert s["rounds"] == len(samples(out)) >= 7


@pytest.mark.wall(60)
def test_duration_ends_the_run(leaky, tmp_path):
    srv = leaky("--leak", "none")
    out = tmp_path / "out"
    t0 = time.monotonic()
    r = soak("--url", srv.url, "--rounds", "0", "--duration", "2s",
             "--warmup", "1", "--conns", "5", "--hold", "50ms", "--settle",
             "50ms", "--out", out)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    # It stops after the round running at 2 s: a round is well under 1 s.
    assert 2.0 <= took < 10.0, took
    assert len(samples(out)) >= 5


def test_help_explains_every_flag():
    r = soak("--help")
    assert r.returncode == 0
    flags = re.findall(r"^  (--[a-z-]+)", r.stdout, re.M)
    for f in ("--url", "--pub-url", "--pid", "--conns", "--size", "--spread", "--rounds",
              "--duration", "--warmup", "--leak-threshold", "--out",
              "--hold", "--faults", "--fault-conns", "--close", "--mem-url",
              "--tls-ca", "--insecure"):
        assert f in flags, f
    # Each flag's text (up to the next flag) says its default, but --out,
    # --pub-url and --pid, whose default is to do without or to look it
    # up (their text says so).
    text = r.stdout.split("\nflags:\n")[1].split("  -h, --help")[0]
    for block in re.split(r"\n(?=  --)", text.strip("\n")):
        name = block.split()[0]
        if name in ("--out", "--pid", "--pub-url", "--tls-ca"):
            assert "empty:" in block or "default:" in block, block
            continue
        assert "(default" in block, block


@pytest.mark.parametrize("args, says", [
    (["--rounds", "5", "--warmup", "3"], "fewer than 4 rounds"),
    (["--faults", "slow,leaky"], "invalid --faults"),
    (["--rounds", "0"], "needs a --duration"),
    (["--close", "sometimes"], "--close"),
    (["--url", "ftp://127.0.0.1:1/"], "--url"),
    (["--url", "ws://127.0.0.1:1/s", "--pub-url", "http://127.0.0.1:1/p"],
     "--pub-url"),
    (["--url", "tcp://127.0.0.1:1/a"], "need a --pub-url"),
    (["--url", "tcp://127.0.0.1:1/", "--pub-url", "tcp://127.0.0.1:1/a"],
     "one channel name"),
    (["--url", "https://127.0.0.1:1/"], "https:// is not supported"),
])
def test_usage_errors(args, says):
    r = soak(*args)
    assert r.returncode == 2
    assert says in r.stderr, r.stderr


def test_unreachable_server_exits_2(tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = soak("--url", f"ws://127.0.0.1:{port}/", "--pid", str(os.getpid()),
             *SHORT, "--out", tmp_path / "out")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "lost the target in round 1" in r.stderr
    assert "connection refused" in r.stderr
