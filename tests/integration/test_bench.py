"""`moor bench`: the idle, echo, broadcast, handshake and http modes against
a real `moor serve`, the errors it must report (unreachable server,
refused connections, a server that goes away, lost messages, the
open-files limit), its usage errors and --help.

Every run is short (a few hundred connections, one second of echo); the
figures themselves are checked only for being plausible and consistent,
never against a target: that is what `make bench` is for.
"""

import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import base_env, is_debug_build, moor_bin, run_moor


def bench(*args, timeout=30):
    """Runs `moor bench ARGS...` to completion."""
    return run_moor(["bench"] + [str(a) for a in args], timeout=timeout)


def bench_json(*args, timeout=30):
    r = bench(*args, "--json", timeout=timeout)
    try:
        out = json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"no JSON on stdout (exit {r.returncode}):\n"
                             f"stdout: {r.stdout!r}\nstderr: {r.stderr!r}")
    return r, out


def ws_url(server, path="/echo"):
    return f"ws://127.0.0.1:{server.port}{path}"


def closed_port():
    """A port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def socket_inodes(pid):
    """The inodes of the sockets process pid holds open."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return inodes
    for fd in fds:
        try:
            link = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    return inodes


def established_by_source(port, pid):
    """{local IPv4 address: count} of process pid's ESTABLISHED sockets to
    127.0.0.1:port, from /proc/net/tcp (the bench's side of its
    connections). Matching by inode, not by port alone: a port freed by
    another test's listener can still have that test's connections."""
    counts = {}
    inodes = socket_inodes(pid)
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            rip, rport = remote.split(":")
            if state != "01" or int(rport, 16) != port or \
                    rip != "0100007F" or fields[9] not in inodes:
                continue
            lip = local.split(":")[0]
            addr = ".".join(str(int(lip[i:i + 2], 16))
                            for i in (6, 4, 2, 0))
            counts[addr] = counts.get(addr, 0) + 1
    return counts


# ---- idle ------------------------------------------------------------------

@pytest.mark.wall(30)
def test_idle_spreads_sources_and_reports_bytes_per_conn(moor):
    srv = moor("--accept-rate", "0")
    cmd = [str(moor_bin()), "bench", "idle", "--url", ws_url(srv),
           "--conns", "200", "--sources", "127.0.0.2-127.0.0.3",
           "--hold", "1500ms", "--json"]
    p = subprocess.Popen(cmd, env=base_env(), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        # While the connections are held: 100 from each source address.
        spread = {}
        end = time.monotonic() + 10
        while time.monotonic() < end:
            spread = established_by_source(srv.port, p.pid)
            if sum(spread.values()) >= 200:
                break
            time.sleep(0.05)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert spread == {"127.0.0.2": 100, "127.0.0.3": 100}, spread
    assert p.returncode == 0, err
    d = json.loads(out)
    assert d["mode"] == "idle"
    assert (d["conns"], d["open"], d["failed"], d["sources"]) == \
        (200, 200, 0, 2), d
    # The pid was found from the listening socket: the server's own.
    assert d["pid"] == srv.proc.pid
    before, after = d["before"]["vm_rss"], d["after_hold"]["vm_rss"]
    assert before > 0 and after >= before, d
    assert d["bytes_per_conn"] == int((after - before) / 200), d
    # 200 conns on a fresh server touch new pages: some growth, and far
    # less than a page per connection.
    assert 0 < d["bytes_per_conn"] < 4096, d
    assert d["pss_per_conn"] is not None and d["private_per_conn"] is not None
    # Every connection was closed at the end: the server is back to none.
    m = srv.wait_metric(lambda m: m.sum("moor_connections") <= 1, 5)
    assert m.sum("moor_connections") <= 1, m.family("moor_connections")


def test_idle_table_names_each_figure(moor):
    srv = moor()
    r = bench("idle", "--url", ws_url(srv), "--conns", 50, "--hold", "100ms",
              "--pid", srv.proc.pid)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"server pid {srv.proc.pid}" in out
    assert "50 of 50 open" in out
    for label in ("VmRSS", "Pss", "Private", "before", "all open",
                  "after 0.1 s idle", "bytes per connection"):
        assert label in out, (label, out)


def test_idle_counts_refused_connections_by_reason(moor):
    srv = moor("--max-conns", "30", "--accept-rate", "0")
    r, d = bench_json("idle", "--url", ws_url(srv), "--conns", 60,
                      "--hold", "100ms")
    assert r.returncode == 1, r.stderr
    assert d["open"] == 30 and d["failed"] == 30, d
    assert d["failures"] == {"handshake: HTTP 503": 30}, d


def test_idle_without_a_server_process_says_so():
    r = bench("idle", "--url", f"ws://127.0.0.1:{closed_port()}/echo",
              "--conns", 10)
    assert r.returncode == 1
    assert "no process of ours listens on 127.0.0.1:" in r.stderr
    assert "--pid" in r.stderr


# ---- echo ------------------------------------------------------------------

@pytest.mark.wall(30)
def test_echo_reports_rate_and_latency(moor):
    srv = moor()
    r, d = bench_json("echo", "--url", ws_url(srv), "--conns", 4,
                      "--inflight", 4, "--size", "64B", "--duration", "1s",
                      "--warmup", "200ms")
    assert r.returncode == 0, r.stderr
    assert d["mode"] == "echo" and d["open"] == 4 and d["failed"] == 0, d
    assert (d["inflight"], d["size"]) == (4, 64)
    assert 0.9 <= d["duration_s"] <= 1.5, d
    assert d["messages"] > 0 and d["msgs_per_s"] > 0, d
    assert abs(d["msgs_per_s"] - d["messages"] / d["duration_s"]) <= \
        0.01 * d["msgs_per_s"] + 1, d
    lat = d["latency_us"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"], lat
    assert d["mismatched"] == 0 and d["dropped"] == 0, d
    assert d["server_cpu_pct"] is not None and d["server_cpu_pct"] > 0, d
    # The server saw at least every message counted, as a masked frame
    # of 2 + 4 + 64 bytes, and sent each back (2 + 64 bytes).
    m = srv.metrics()
    assert m.get_value("moor_bytes_received_total") >= 70 * d["messages"]
    assert m.get_value("moor_bytes_sent_total") >= 66 * d["messages"]


def test_echo_table(moor):
    srv = moor()
    r = bench("echo", "--url", ws_url(srv), "--conns", 2, "--inflight", 2,
              "--duration", "300ms", "--warmup", "0")
    assert r.returncode == 0, r.stderr
    lines = {l.split()[0]: l for l in r.stdout.splitlines() if l.strip()}
    rate = lines["messages/s"].split()[1]
    assert int(rate) > 0, r.stdout
    assert "p50" in lines["latency"] and "p99" in lines["latency"]
    assert "p999" in lines["latency"]


def test_echo_unreachable_is_a_clear_error():
    url = f"ws://127.0.0.1:{closed_port()}/echo"
    r = bench("echo", "--url", url, "--duration", "1s")
    assert r.returncode == 1
    assert f"cannot connect to {url}: connection refused" in r.stderr, \
        r.stderr
    assert r.stdout == ""


def test_echo_wrong_path_is_a_clear_error(moor):
    srv = moor()
    r = bench("echo", "--url", ws_url(srv, "/nope"), "--duration", "1s")
    assert r.returncode == 1
    assert "handshake: HTTP 404" in r.stderr, r.stderr


@pytest.mark.wall(30)
def test_echo_server_going_away_counts_closed_early(moor):
    srv = moor("--drain-spread", "100ms")
    p = subprocess.Popen([str(moor_bin()), "bench", "echo", "--url",
                          ws_url(srv), "--conns", "4", "--duration", "10s",
                          "--warmup", "0", "--json"],
                         env=base_env(), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        time.sleep(1.0)
        rc, err = srv.stop(signal.SIGTERM, timeout=15)
        out, berr = p.communicate(timeout=15)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == 0, err
    assert p.returncode == 1, berr
    d = json.loads(out)
    assert d["closed_early"] == 4, d
    # The measuring window ended when the server left, not at --duration.
    assert 0.5 < d["duration_s"] < 5, d
    assert "every connection was closed by the server" in d["error"], d
    assert all("1001" in k for k in d["closed_early_reasons"]), d


@pytest.mark.wall(30)
def test_echo_interrupted_exits_130(moor):
    srv = moor()
    p = subprocess.Popen([str(moor_bin()), "bench", "echo", "--url",
                          ws_url(srv), "--conns", "2", "--duration", "20s"],
                         env=base_env(), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        time.sleep(1.5 if not is_debug_build() else 2.5)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=15)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err
    assert "interrupted" in err
    # The connections were closed with a close handshake, not dropped.
    m = srv.wait_metric(lambda m: m.sum("moor_connections") <= 1, 5)
    assert m.sum("moor_connections") <= 1


# ---- broadcast -------------------------------------------------------------

def bc_args(server, conns=50, channel="t", pub_channel=None):
    return ["--sub-url", ws_url(server, f"/sub/{channel}"),
            "--pub-url", ws_url(server, f"/pub/{pub_channel or channel}"),
            "--conns", conns]


@pytest.mark.wall(30)
def test_broadcast_counts_every_delivery(moor):
    srv = moor("--rate", "0")
    r, d = bench_json("broadcast", *bc_args(srv), "--size", "64B",
                      "--inflight", 8, "--duration", "1s",
                      "--warmup", "200ms")
    assert r.returncode == 0, r.stderr
    assert d["mode"] == "broadcast" and d["error"] is None, d
    assert (d["open"], d["failed"], d["closed_early"]) == (50, 0, 0), d
    assert (d["subscribers"], d["size"], d["inflight"]) == (50, 64, 8), d
    assert d["rate"] is None
    assert d["url"] == ws_url(srv, "/sub/t")
    assert d["pub_url"] == ws_url(srv, "/pub/t")
    assert (d["lost"], d["duplicated"], d["out_of_order"], d["malformed"],
            d["dropped"]) == (0, 0, 0, 0, 0), d
    assert 0.9 <= d["duration_s"] <= 1.5, d
    assert d["published"] > 0 and d["deliveries"] > 0, d
    # Each message of the window reaches all 50, give or take the 8 in
    # flight at either edge of it.
    assert abs(d["deliveries"] - 50 * d["published"]) <= 50 * 8, d
    assert abs(d["deliveries_per_s"] - d["deliveries"] / d["duration_s"]) \
        <= 0.01 * d["deliveries_per_s"] + 1, d
    lat = d["latency_us"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"], lat
    assert d["server_cpu_pct"] is not None and d["server_cpu_pct"] > 0, d
    # The server published at least every message counted (and the warm-up
    # and sync probes) and queued each for every subscriber.
    m = srv.metrics()
    assert m.get_value("moor_pubsub_published_total") >= d["published"]
    assert m.get_value("moor_pubsub_delivered_total") >= d["deliveries"]
    assert m.sum("moor_pubsub_slow_disconnects_total") == 0
    # Every connection was closed at the end.
    m = srv.wait_metric(lambda m: m.sum("moor_connections") <= 1, 5)
    assert m.sum("moor_connections") <= 1, m.family("moor_connections")


@pytest.mark.wall(30)
def test_broadcast_at_a_fixed_rate(moor):
    srv = moor()
    r, d = bench_json("broadcast", *bc_args(srv, conns=30), "--size", "16B",
                      "--rate", 20, "--duration", "1s", "--warmup", "0")
    assert r.returncode == 0, r.stderr
    assert d["rate"] == 20 and d["held"] == 0, d
    # 20 messages in the second (one at its start, a tick of 16 ms late
    # at most at its end), each to all 30.
    assert 18 <= d["published"] <= 24, d
    assert 25 * d["published"] <= d["deliveries"] <= 30 * d["published"], d
    lat = d["latency_us"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"], lat
    assert d["lost"] == 0 and d["duplicated"] == 0, d


def test_broadcast_table(moor):
    srv = moor("--rate", "0")
    r = bench("broadcast", *bc_args(srv, conns=10), "--duration", "300ms",
              "--warmup", "0")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    lines = {l.split()[0]: l for l in out.splitlines() if l.strip()}
    assert int(lines["deliveries/s"].split()[1]) > 0, out
    for word in ("p50", "p99", "p999"):
        assert word in lines["latency"], out
    assert lines["check"].split()[1:3] == ["0", "lost,"], out
    assert "10 of 10 open" in lines["subscribers"], out
    assert "at most 64 in flight" in lines["subscribers"], out


@pytest.mark.wall(30)
def test_broadcast_loss_fails_the_run(moor):
    # Queues of 1 KiB that drop their oldest: a burst of 64 messages of
    # 256 B cannot fit, so subscribers miss messages (and get moor's
    # {"moor_dropped":N} notices, which are not the bench's messages).
    srv = moor("--rate", "0", "--queue-limit", "1KiB", "--slow-policy",
               "drop-oldest")
    r, d = bench_json("broadcast", *bc_args(srv, conns=10), "--size",
                      "256B", "--duration", "500ms", "--warmup", "0")
    assert r.returncode == 1, r.stderr
    assert d["lost"] > 0 and d["malformed"] > 0, d
    assert d["exit"] == 1
    assert srv.metric("moor_pubsub_dropped_total", reason="drop_oldest") > 0


def test_broadcast_wrong_pub_path_is_a_clear_error(moor):
    srv = moor()
    r = bench("broadcast", "--sub-url", ws_url(srv, "/sub/t"), "--pub-url",
              ws_url(srv, "/nope"), "--conns", 5)
    assert r.returncode == 1
    assert f"cannot connect to {ws_url(srv, '/nope')}: handshake: HTTP 404" \
        in r.stderr, r.stderr
    assert r.stdout == ""


def test_broadcast_unreachable_is_a_clear_error():
    port = closed_port()
    r = bench("broadcast", "--sub-url", f"ws://127.0.0.1:{port}/sub/t",
              "--pub-url", f"ws://127.0.0.1:{port}/pub/t", "--conns", 5)
    assert r.returncode == 1
    assert f"cannot connect to ws://127.0.0.1:{port}/" in r.stderr, r.stderr
    assert "connection refused" in r.stderr, r.stderr


@pytest.mark.wall(30)
def test_broadcast_other_channel_is_a_clear_error(moor):
    srv = moor()
    r = bench("broadcast", *bc_args(srv, conns=5, pub_channel="elsewhere"),
              "--connect-timeout", "200ms", timeout=20)
    assert r.returncode == 1
    assert f"no message published on {ws_url(srv, '/pub/elsewhere')} " \
        f"reached the subscriber on {ws_url(srv, '/sub/t')}" in r.stderr, \
        r.stderr


# ---- handshake -------------------------------------------------------------

@pytest.mark.wall(30)
def test_handshake_counts_every_connection_the_server_saw(moor):
    srv = moor("--accept-rate", "0")
    r, d = bench_json("handshake", "--url", ws_url(srv), "--conns", 4,
                      "--duration", "1s", "--warmup", "200ms")
    assert r.returncode == 0, r.stderr
    assert d["mode"] == "handshake" and d["failed"] == 0, d
    assert d["error"] is None and d["failed_in_run"] == 0, d
    assert 0.9 <= d["duration_s"] <= 1.5, d
    assert 0 < d["handshakes"] <= d["handshakes_in_run"], d
    assert abs(d["handshakes_per_s"] - d["handshakes"] / d["duration_s"]) \
        <= 0.01 * d["handshakes_per_s"] + 1, d
    lat = d["latency_us"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"], lat
    assert d["server_cpu_pct"] is not None, d
    # Every handshake counted was a connection the server accepted and
    # upgraded (besides the warm-up one and the 4 of the ramp-up), and
    # each was closed: none is left open, none is left counted.
    m = srv.wait_metric(lambda m: m.sum("moor_connections") <= 1, 5)
    assert m.sum("moor_connections") <= 1, m.family("moor_connections")
    assert m.get_value("moor_accepted_total") >= \
        d["handshakes_in_run"] + 4 + 1, d
    # Closed outright once open: the server saw the peer go, not a close
    # handshake.
    assert m.get_value("moor_closed_total", reason="peer_closed") >= \
        d["handshakes_in_run"], d


def test_handshake_table(moor):
    srv = moor("--accept-rate", "0")
    r = bench("handshake", "--url", ws_url(srv), "--conns", 2,
              "--duration", "300ms", "--warmup", "0")
    assert r.returncode == 0, r.stderr
    lines = {l.split()[0]: l for l in r.stdout.splitlines() if l.strip()}
    assert int(lines["handshakes/s"].split()[1]) > 0, r.stdout
    assert "2 at a time" in lines["connections"], r.stdout
    assert "p50" in lines["latency"] and "p99" in lines["latency"]


def test_handshake_wrong_path_is_a_clear_error(moor):
    srv = moor()
    r = bench("handshake", "--url", ws_url(srv, "/nope"), "--duration", "1s")
    assert r.returncode == 1
    assert "handshake: HTTP 404" in r.stderr, r.stderr


# ---- auth ------------------------------------------------------------------

@pytest.mark.wall(30)
def test_token_in_the_url_reaches_an_auth_server(moor, tmp_path):
    """moor serve --auth jwt (docs/auth.md): a ?token= in the URL is sent
    with the path, so handshake (its warm-up only opens and closes, no
    echo is asked of /sub) and broadcast get through; without it the 401
    is the run's error (bench/run.sh --only auth relies on both)."""
    import jwt  # Debian python3-jwt, as in test_auth.py

    secret = b"moor-bench-secret-0123456789-abcdefghij"
    (tmp_path / "secret").write_bytes(secret + b"\n")
    srv = moor("--accept-rate", "0", "--rate", "0", "--auth", "jwt",
               "--jwt-secret-file", str(tmp_path / "secret"))
    tok = jwt.encode({"exp": int(time.time()) + 600, "channels": ["t"],
                      "publish": ["t"]}, secret, algorithm="HS256")
    q = f"?token={tok}"

    r, d = bench_json("handshake", "--url", ws_url(srv, "/sub/t" + q),
                      "--conns", 4, "--duration", "500ms", "--warmup", "0")
    assert r.returncode == 0, r.stderr
    assert d["error"] is None and d["failed"] == 0, d
    assert d["handshakes"] > 0, d
    r, d = bench_json("broadcast", "--sub-url", ws_url(srv, "/sub/t" + q),
                      "--pub-url", ws_url(srv, "/pub/t" + q), "--conns", 10,
                      "--size", "64B", "--duration", "300ms", "--warmup", "0")
    assert r.returncode == 0, r.stderr
    assert d["error"] is None and d["deliveries"] > 0 and d["lost"] == 0, d
    # Every one of them was let through by its token, none refused.
    m = srv.metrics()
    assert m.get_value("moor_auth_total", result="allowed",
                       reason="token") >= d["subscribers"] + 1
    assert m.get_value("moor_auth_total", result="denied",
                       reason="no_token") == 0

    for mode, args in (
            ("handshake", ["--url", ws_url(srv, "/sub/t")]),
            ("broadcast", ["--sub-url", ws_url(srv, "/sub/t"), "--pub-url",
                           ws_url(srv, "/pub/t" + q), "--size", "64B"])):
        r, d = bench_json(mode, *args, "--conns", 4, "--duration", "300ms",
                          "--warmup", "0")
        assert r.returncode == 1, (mode, r.stderr)
        assert d["error"] == \
            f"cannot connect to {ws_url(srv, '/sub/t')}: handshake: HTTP 401", d
    assert srv.metric("moor_auth_total", result="denied",
                      reason="no_token") == 2


# ---- http ------------------------------------------------------------------

HTTP_FIELDS = ("requests", "requests_per_s", "errors", "errors_by_reason",
               "p50_ms", "p99_ms", "p999_ms", "cpu_s", "requests_per_cpu_s",
               "conns_new", "conns_reused", "pool")
HOLD_FIELDS = ("bytes_per_conn", "conns", "conns_new", "accounted_per_conn",
               "accounted_per_conn_by_tag", "idle", "closed_peer", "errors",
               "rss", "pool")


def http_url(server, path="/healthz"):
    return f"http://127.0.0.1:{server.port}{path}"


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    """A self-signed P-256 certificate for 127.0.0.1 (cert, key)."""
    d = tmp_path_factory.mktemp("bench-pki")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                    "-keyout", str(d / "key.pem"), "-out",
                    str(d / "cert.pem"), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=30)
    return d / "cert.pem", d / "key.pem"


def tls_server(moor, cert, key):
    srv = moor("--tls-listen", "127.0.0.1:0", "--tls-cert", str(cert),
               "--tls-key", str(key), "--accept-rate", "0")
    m = re.search(rb"https://127\.0\.0\.1:(\d+)", srv.out_path.read_bytes())
    assert m, srv.out_path.read_bytes()
    return int(m.group(1))


@pytest.mark.wall(30)
def test_http_request_loop(moor):
    srv = moor()
    r, d = bench_json("http", "--url", http_url(srv), "--conns", 4,
                      "--duration", "1s", "--warmup", "200ms")
    assert r.returncode == 0, r.stderr
    for k in HTTP_FIELDS:
        assert k in d, k
    assert d["mode"] == "http" and d["error"] is None and d["exit"] == 0, d
    assert d["errors"] == 0 and d["errors_by_reason"] == {}, d
    assert d["conns"] == 4 and d["rate"] is None, d
    assert 0.9 <= d["duration_s"] <= 1.5, d
    assert d["requests"] > 0, d
    assert abs(d["requests_per_s"] - d["requests"] / d["duration_s"]) <= \
        0.01 * d["requests_per_s"] + 1, d
    assert 0 < d["p50_ms"] <= d["p99_ms"] <= d["p999_ms"] <= d["max_ms"], d
    assert d["cpu_s"] > 0, d
    assert abs(d["requests_per_cpu_s"] - d["requests"] / d["cpu_s"]) <= \
        0.02 * d["requests_per_cpu_s"] + 1, d
    # Keep-alive: the warm-up's connection and three more, then every
    # request on a pooled one.
    assert d["conns_new"] == 4 and d["conns_new_in_window"] == 0, d
    assert d["conns_reused"] >= d["requests"], d
    assert d["pool"]["idle"] == 4 and d["pool"]["closed_error"] == 0, d
    # The server answered at least every request counted, on 4
    # connections (and this one).
    m = srv.metrics()
    assert m.sum("moor_http_requests_total") >= d["requests"], \
        m.family("moor_http_requests_total")


@pytest.mark.wall(30)
def test_http_rate_is_kept(moor):
    srv = moor()
    r, d = bench_json("http", "--url", http_url(srv), "--conns", 4,
                      "--rate", 200, "--duration", "1s", "--warmup", "0")
    assert r.returncode == 0, r.stderr
    assert d["rate"] == 200 and d["errors"] == 0, d
    assert 180 <= d["requests"] <= 220, d
    assert d["held"] == 0, d
    assert 0 < d["p50_ms"] <= d["p99_ms"], d


def test_http_table(moor):
    srv = moor()
    r = bench("http", "--url", http_url(srv), "--conns", 2, "--duration",
              "300ms", "--warmup", "0")
    assert r.returncode == 0, r.stderr
    lines = {l.split()[0]: l for l in r.stdout.splitlines() if l.strip()}
    assert int(lines["requests/s"].split()[1]) > 0, r.stdout
    assert "p50" in lines["latency"] and "p999" in lines["latency"]
    assert "requests per CPU second" in lines["client"], r.stdout


@pytest.mark.wall(40)
def test_http_idle_hold(moor):
    srv = moor("--accept-rate", "0")
    r, d = bench_json("http", "--url", http_url(srv), "--conns", 200,
                      "--idle-hold", "500ms")
    assert r.returncode == 0, r.stderr
    for k in HOLD_FIELDS:
        assert k in d, k
    assert d["error"] is None and d["errors"] == 0, d
    # 200 distinct connections, all pooled and idle at the end.
    assert d["conns"] == 200 and d["conns_new"] == 200, d
    assert d["idle"] == 200 and d["closed_peer"] == 0, d
    assert d["pool"]["idle"] == 200 and d["pool"]["active"] == 0, d
    assert d["bytes_per_conn"] is not None, d
    assert d["bytes_per_conn_after_trim"] is not None, d
    tags = d["accounted_per_conn_by_tag"]
    assert {"conn", "http_client", "tls", "dns"} <= set(tags), tags
    # struct conn comes from 64 KiB slabs: 200 may fit in the one the
    # warm-up's connection left, so the conn tag can show no growth.
    assert tags["conn"] >= 0 and tags["tls"] == 0, tags
    assert d["accounted_per_conn"] >= tags["conn"], d
    assert d["rss"]["before"] > 0 and d["rss"]["after_hold"] > 0, d


@pytest.mark.wall(30)
def test_http_idle_hold_server_closes(moor):
    # The server's keep-alive timeout is shorter than the hold.
    srv = moor("--idle-timeout", "300ms")
    r, d = bench_json("http", "--url", http_url(srv), "--conns", 20,
                      "--idle-hold", "1500ms")
    assert r.returncode == 1, r.stderr
    assert d["conns_new"] == 20 and d["closed_peer"] == 20, d
    assert d["idle"] == 0 and d["bytes_per_conn"] is None, d
    assert "the server closed 20 of the idle connections" in r.stderr


@pytest.mark.wall(40)
def test_https_idle_hold_and_loop(moor, self_signed):
    cert, key = self_signed
    port = tls_server(moor, cert, key)
    url = f"https://127.0.0.1:{port}/healthz"
    r, d = bench_json("http", "--url", url, "--conns", 50, "--idle-hold",
                      "300ms", "--tls-ca", cert)
    assert r.returncode == 0, r.stderr
    assert d["conns_new"] == 50 and d["idle"] == 50 and d["errors"] == 0, d
    assert d["accounted_per_conn_by_tag"]["tls"] > 0, d
    r, d = bench_json("http", "--url", url, "--conns", 2, "--duration",
                      "300ms", "--warmup", "0", "--tls-ca", cert)
    assert r.returncode == 0, r.stderr
    assert d["requests"] > 0 and d["errors"] == 0, d
    # Without the CA the certificate does not verify: a clear error.
    r = bench("http", "--url", url, "--conns", 2, "--duration", "300ms")
    assert r.returncode == 1
    assert f"cannot get {url}: " in r.stderr, r.stderr
    assert "certificate" in r.stderr, r.stderr


def test_http_refused_is_a_clear_error():
    url = f"http://127.0.0.1:{closed_port()}/healthz"
    r = bench("http", "--url", url, "--duration", "1s")
    assert r.returncode == 1, r.stderr
    assert f"cannot get {url}: " in r.stderr, r.stderr
    assert "Connection refused" in r.stderr, r.stderr
    assert r.stdout == ""
    r, d = bench_json("http", "--url", url, "--idle-hold", "1s")
    assert r.returncode == 1 and d["exit"] == 1, d
    assert "Connection refused" in d["error"], d


def test_http_wrong_path_is_a_clear_error(moor):
    srv = moor()
    r = bench("http", "--url", http_url(srv, "/nope"), "--duration", "1s")
    assert r.returncode == 1
    assert f"cannot get {http_url(srv, '/nope')}: HTTP 404" in r.stderr, \
        r.stderr


@pytest.mark.wall(30)
def test_http_interrupted_still_reports(moor):
    srv = moor()
    p = subprocess.Popen([str(moor_bin()), "bench", "http", "--url",
                          http_url(srv), "--conns", "2", "--duration", "20s",
                          "--warmup", "0", "--json"],
                         env=base_env(), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        time.sleep(1.5 if not is_debug_build() else 2.5)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=15)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err
    assert "interrupted" in err
    d = json.loads(out)
    assert d["requests"] > 0 and d["exit"] == 130, d
    assert d["duration_s"] < 10, d


@pytest.mark.parametrize("args,needle", [
    (["--url", "ws://127.0.0.1/echo"],
     'invalid --url "ws://127.0.0.1/echo": http mode takes http:// or '
     'https://'),
    (["--url", "http://127.0.0.1:99999/"], 'invalid --url'),
    (["--url", "http://"], 'invalid --url "http://"'),
    (["--sources", "none"], "--sources does not apply to moor bench http"),
    (["--hold", "1s"], "--hold does not apply to moor bench http"),
    (["--inflight", "4"], "--inflight does not apply to moor bench http"),
    (["--idle-hold", "1s", "--rate", "10"],
     "--rate does not go with --idle-hold"),
    (["--idle-hold", "0"], 'invalid value "0" for --idle-hold'),
])
def test_http_usage_errors_exit_2(args, needle):
    r = bench("http", *args)
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    assert needle in r.stderr, (args, r.stderr)
    assert r.stderr.startswith("moor bench: ")
    assert r.stdout == ""


def test_http_in_help():
    r = bench("--help")
    assert r.returncode == 0, r.stderr
    for word in ("http", "--idle-hold", "https://"):
        assert word in r.stdout, word
    assert all(len(l) <= 80 for l in r.stdout.splitlines())
    r = bench("echo", "--idle-hold", "1s")
    assert r.returncode == 2
    assert "--idle-hold does not apply to moor bench echo" in r.stderr


# ---- limits, usage, help ---------------------------------------------------

def test_more_conns_than_fds_is_refused_up_front():
    r = bench("idle", "--url", "ws://127.0.0.1:9/echo", "--conns", 5000000,
              "--pid", 1)
    assert r.returncode == 1
    assert "open-files limit" in r.stderr and "RLIMIT_NOFILE" in r.stderr, \
        r.stderr


@pytest.mark.parametrize("args,needle", [
    ([], "missing mode"),
    (["nosuchmode"], 'unknown mode "nosuchmode"'),
    (["echo", "--bogus"], 'unknown flag "--bogus"'),
    (["echo", "stray"], 'unexpected argument "stray"'),
    (["idle", "--inflight", "4"], "--inflight does not apply to moor bench "
                                  "idle"),
    (["echo", "--size", "10x"], 'invalid value "10x" for --size'),
    (["echo", "--conns", "0"], 'invalid value "0" for --conns'),
    (["echo", "--duration", "soon"], 'invalid value "soon" for --duration'),
    (["echo", "--conns"], "flag --conns needs a value"),
    (["echo", "--url", "http://127.0.0.1/echo"], 'invalid --url'),
    (["echo", "--url", "ws://127.0.0.1:99999/echo"], "port must be 1-65535"),
    (["echo", "--url", "ws://example.com/echo"], "IP address or localhost"),
    (["echo", "--sources", "127.0.0.9-127.0.0.2"], "invalid --sources"),
    (["echo", "--rate", "10"], "--rate does not apply to moor bench echo"),
    (["broadcast", "--url", "ws://127.0.0.1/echo"],
     "--url does not apply to moor bench broadcast"),
    (["broadcast", "--size", "8B"], "too small for broadcast"),
    (["broadcast", "--pub-url", "http://127.0.0.1/pub/t"],
     'invalid --pub-url "http://127.0.0.1/pub/t"'),
    (["broadcast", "--sub-url", "wss://127.0.0.1:0/sub/t"],
     'invalid --sub-url "wss://127.0.0.1:0/sub/t": URL port must be'),
    (["broadcast", "--rate", "x"], 'invalid value "x" for --rate'),
    (["handshake", "--inflight", "4"], "--inflight does not apply to moor "
                                       "bench handshake"),
    (["handshake", "--hold", "1s"], "--hold does not apply to moor bench "
                                    "handshake"),
])
def test_usage_errors_exit_2(args, needle):
    r = bench(*args)
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    assert needle in r.stderr, (args, r.stderr)
    assert r.stderr.startswith("moor bench: ")
    assert r.stdout == ""


def test_help_lists_modes_and_flags():
    r = bench("--help")
    assert r.returncode == 0, r.stderr
    for word in ("idle", "echo", "broadcast", "handshake", "--url", "--sub-url",
                 "--pub-url", "--rate", "--conns", "--sources", "--pid",
                 "--hold", "--inflight", "--size", "--duration", "--warmup",
                 "--json", "--timeout", "--connect-timeout", "--parallel"):
        assert word in r.stdout, word
    assert all(len(l) <= 80 for l in r.stdout.splitlines()), \
        [l for l in r.stdout.splitlines() if len(l) > 80]
    # The top-level usage names the command.
    r = run_moor(["help"])
    assert "bench" in r.stdout
