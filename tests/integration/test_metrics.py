"""/metrics and /debug/mem: valid format, meaningful values."""

import json
import os
import re
import subprocess

import pytest

from conftest import (is_debug_build, Conn, build_request, parse_metrics,
                      run_moor)

PROMTOOL = "/usr/bin/promtool"

REQUIRED = [
    "moor_accepted_total",
    "moor_closed_total",
    "moor_refused_total",
    "moor_connections",
    "moor_http_requests_total",
    "moor_http_rejected_total",
    "moor_bytes_received_total",
    "moor_bytes_sent_total",
    "moor_mem_live_bytes",
    "moor_mem_live_allocations",
    "moor_mem_allocations_total",
    "moor_process_resident_memory_bytes",
    "moor_process_open_fds",
    "moor_mem_trims_total",
    "moor_mem_trims_backed_off_total",
    "moor_mem_trimmed_bytes_total",
    "moor_mem_trim_seconds_total",
]

CLOSE_REASONS = ["peer_closed", "header_timeout", "body_timeout",
                 "idle_timeout", "write_timeout", "linger_timeout",
                 "bad_request", "shutdown"]


def types_of(text):
    out = {}
    for line in text.splitlines():
        m = re.match(r"^# TYPE (\S+) (\S+)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def test_content_type(server):
    r = server.get("/metrics")
    assert r.status == 200
    assert r.header("content-type") == \
        "text/plain; version=0.0.4; charset=utf-8"


def test_promtool_check(server):
    assert os.path.exists(PROMTOOL), \
        "promtool missing (Debian package prometheus): run make deps"
    # Make a few labelled series exist first.
    server.get("/nope")
    with server.conn() as c:
        c.send(b"\x00bad\r\n\r\n")
        c.read_response()
    text = server.metrics_text()
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"promtool:\n{r.stdout}{r.stderr}"
    assert r.stdout.strip() == "" and r.stderr.strip() == "", \
        f"promtool lint:\n{r.stdout}{r.stderr}"


def test_required_families_and_types(server):
    text = server.metrics_text()
    types = types_of(text)
    m = parse_metrics(text)
    for name in REQUIRED:
        assert name in types, f"no # TYPE for {name}"
        assert any(k == name or k.startswith(name + "{") for k in m), \
            f"no sample of {name}"
    for name, t in types.items():
        if name.endswith("_total"):
            assert t == "counter", f"{name} is {t}"
    assert types["moor_connections"] == "gauge"
    assert types["moor_mem_live_bytes"] == "gauge"
    for name in types:
        assert re.search(rf"^# HELP {re.escape(name)} \S", text, re.M), \
            f"no HELP for {name}"


def test_close_reasons_listed_from_start(server):
    m = server.metrics()
    for reason in CLOSE_REASONS:
        key = f'moor_closed_total{{reason="{reason}"}}'
        assert key in m, f"{key} missing (series should exist at 0)"
    for reason in ("max_conns", "memory"):
        assert f'moor_refused_total{{reason="{reason}"}}' in m


def test_counters_increase(server):
    m1 = server.metrics()
    with server.conn() as c:
        for _ in range(10):
            assert c.request().status == 200
        assert c.request("GET", "/nope").status == 404
    m2 = server.metrics()
    req = m2.get_value("moor_http_requests_total") - \
        m1.get_value("moor_http_requests_total")
    # 11 of ours + the /metrics fetch of m1 or m2 (counted at dispatch).
    assert 11 <= req <= 12, f"requests_total grew by {req}"
    assert m2.get_value("moor_accepted_total") - \
        m1.get_value("moor_accepted_total") == 2
    for name in ("moor_bytes_received_total", "moor_bytes_sent_total"):
        assert m2.get_value(name) > m1.get_value(name) + 10 * 30, name
    assert m2.sum("moor_mem_allocations_total") > \
        m1.sum("moor_mem_allocations_total")
    for k, v in m1.items():
        if k.split("{")[0].endswith("_total"):
            assert m2.get(k, 0) >= v, f"counter {k} went down"


def test_process_metrics(server):
    m = server.metrics()
    rss = m.get_value("moor_process_resident_memory_bytes")
    assert rss > 100_000, rss
    fds = m.get_value("moor_process_open_fds")
    assert 3 <= fds < 1000, fds
    with open(f"/proc/{server.proc.pid}/status") as f:
        vmrss = int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024
    assert 0.5 * vmrss < rss < 2 * vmrss, (rss, vmrss)


def test_open_fds_tracks_conns(server):
    base = server.metric("moor_process_open_fds")
    conns = [Conn(server.port) for _ in range(10)]
    try:
        for c in conns:
            assert c.request().status == 200
        now = server.metric("moor_process_open_fds")
        assert now - base == 10, (base, now)
    finally:
        for c in conns:
            c.close()


def test_mem_live_bytes_return_to_baseline(server):
    base = server.metrics()
    conns = [Conn(server.port) for _ in range(50)]
    for c in conns:
        assert c.request().status == 200
    # A partial header block on some, so carry buffers are live too.
    for c in conns[:10]:
        c.send(b"GET /healthz HTTP/1.1\r\nX-Part: abc")
    during = server.metrics()
    # Conns live on 64 KiB slabs (pool.c), so the conn tag moves by whole
    # slabs; the open-connection gauges and the carry tag move per conn.
    assert during.sum("moor_connections") >= base.sum("moor_connections") + 50
    assert during.get_value("moor_mem_live_bytes", tag="carry") > \
        base.get_value("moor_mem_live_bytes", tag="carry")
    for c in conns:
        c.close()
    target = base.sum("moor_mem_live_bytes") + 512
    after = server.wait_metric(
        lambda m: m.sum("moor_mem_live_bytes") <= target, timeout=5)
    assert after.sum("moor_mem_live_bytes") <= target, \
        f"live bytes {base.sum('moor_mem_live_bytes')} -> " \
        f"{after.sum('moor_mem_live_bytes')} after 50 conns came and went"
    assert after.get_value("moor_mem_live_allocations", tag="conn") == \
        base.get_value("moor_mem_live_allocations", tag="conn")


def test_debug_mem(server):
    r = server.get("/debug/mem")
    assert r.status == 200
    assert r.header("content-type", "").startswith("application/json")
    d = json.loads(r.body)
    assert isinstance(d["live_bytes"], int) and d["live_bytes"] > 0
    assert isinstance(d["rss_bytes"], int) and d["rss_bytes"] > 0
    for k in ("checks", "trims", "backed_off", "given_back_bytes"):
        assert isinstance(d["trim"][k], int) and d["trim"][k] >= 0, d["trim"]
    tags = d["tags"]
    assert "conn" in tags, tags.keys()
    for tag, v in tags.items():
        for k in ("live_bytes", "live_count", "total_allocs", "total_bytes"):
            assert isinstance(v[k], int) and v[k] >= 0, (tag, k, v)
        assert v["total_allocs"] >= v["live_count"], (tag, v)
        assert v["total_bytes"] >= v["live_bytes"], (tag, v)
    # live_bytes is read before the page's own buffer grows; the tags
    # after. So: the tags without "metrics" <= live_bytes <= all tags.
    total = sum(v["live_bytes"] for v in tags.values())
    others = total - tags.get("metrics", {}).get("live_bytes", 0)
    assert others <= d["live_bytes"] <= total, (others, d["live_bytes"])
    assert tags["conn"]["live_count"] >= 1   # the conn asking
    if not is_debug_build():
        # Debug builds always record allocation sites (serve.c).
        assert "trace" not in d or d["trace"] == []


def test_debug_mem_agrees_with_metrics(server):
    d = server.debug_mem()
    m = server.metrics()
    for tag in d["tags"]:
        assert f'moor_mem_live_bytes{{tag="{tag}"}}' in m, tag


def test_debug_mem_trace(moor):
    s = moor("--mem-trace")
    conns = [Conn(s.port) for _ in range(3)]
    try:
        for c in conns:
            assert c.request().status == 200
        d = s.debug_mem()
    finally:
        for c in conns:
            c.close()
    trace = d["trace"]
    assert trace, "empty trace with --mem-trace"
    for e in trace:
        assert set(("tag", "site", "bytes", "count")) <= set(e), e
        assert e["bytes"] > 0 and e["count"] > 0
        assert e["tag"] in d["tags"], e
    assert all(isinstance(e["site"], str) and e["site"] for e in trace)
    conn_trace = sum(e["bytes"] for e in trace if e["tag"] == "conn")
    assert conn_trace == d["tags"]["conn"]["live_bytes"]


def test_head_metrics(server):
    with server.conn() as c:
        r = c.request("HEAD", "/metrics")
        assert r.status == 200
        assert c.request().status == 200


def test_idle_conns_hold_no_buffers(server):
    """Rule 3 of docs/principles.md: an idle keep-alive connection holds no
    read, carry or write buffer; its accounted cost is small and fixed."""
    base = server.metrics()
    conns = [Conn(server.port) for _ in range(100)]
    try:
        for c in conns:
            assert c.request().status == 200
        m = server.metrics()
        for tag in ("carry", "queue", "readbuf"):
            assert m.get_value("moor_mem_live_bytes", tag=tag) == \
                base.get_value("moor_mem_live_bytes", tag=tag), \
                f"tag {tag} grew with 100 idle conns"
        per = (m.sum("moor_mem_live_bytes") -
               base.sum("moor_mem_live_bytes")) / 100
        assert per < 1024, f"{per:.0f} accounted bytes per idle conn"
        # A partial header block is carried, exactly, and freed when the
        # block completes.
        conns[0].send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: abc")
        m2 = server.wait_metric(
            lambda m: m.get_value("moor_mem_live_bytes", tag="carry") > 0,
            timeout=2)
        assert m2.get_value("moor_mem_live_bytes", tag="carry") > 0
        conns[0].send(b"def\r\n\r\n")
        assert conns[0].read_response().status == 200
        m3 = server.metrics()
        assert m3.get_value("moor_mem_live_bytes", tag="carry") == 0
    finally:
        for c in conns:
            c.close()


def test_connection_states(server):
    """moor_connections{state} follows each connection's phase."""
    idle = Conn(server.port)
    assert idle.request().status == 200
    header = Conn(server.port)
    header.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    body = Conn(server.port)
    body.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
              b"\r\n12")
    try:
        m = server.wait_metric(
            lambda m: m.get_value("moor_connections", state="reading_body")
            == 1 and m.get_value("moor_connections",
                                 state="reading_header") == 1, timeout=2)
        fam = m.family("moor_connections")
        assert m.get_value("moor_connections", state="reading_header") == 1, \
            fam
        assert m.get_value("moor_connections", state="reading_body") == 1, fam
        assert m.get_value("moor_connections", state="idle") == 1, fam
        assert m.get_value("moor_connections", state="active") == 1, fam
        assert m.sum("moor_connections") == 4, fam
    finally:
        for c in (idle, header, body):
            c.close()


def test_bytes_received_exact(server):
    before = server.metrics()
    data = b"".join(build_request("GET", "/healthz") for _ in range(7))
    with server.conn() as c:
        c.send(data)
        for _ in range(7):
            assert c.read_response().status == 200
    fetch = build_request("GET", "/metrics")
    after = server.metrics()
    got = after.get_value("moor_bytes_received_total") - \
        before.get_value("moor_bytes_received_total")
    # Ours plus the request of the `after` fetch (the `before` fetch's
    # request was read before its page was made).
    assert got == len(data) + len(fetch), (got, len(data), len(fetch))
    sent = after.get_value("moor_bytes_sent_total") - \
        before.get_value("moor_bytes_sent_total")
    assert sent >= 7 * len(b"HTTP/1.1 200 OK\r\n\r\nok\n"), sent


def help_series(help_text):
    """{name: (type, unit, labels)} from the list at the end of --help."""
    out = {}
    tail = help_text.split("Metrics on GET /metrics", 1)[1]
    for line in tail.splitlines():
        m = re.match(r"^  (moor_[a-z_]+)(?:\{([a-z_,]+)\})? +(\w+) +(\S+)$",
                     line)
        if m:
            out[m.group(1)] = (m.group(3), m.group(4),
                               tuple((m.group(2) or "").split(","))
                               if m.group(2) else ())
    return out


def test_help_lists_every_series_with_its_type(server):
    """`moor serve --help` lists every family /metrics serves, with the
    type /metrics gives it, and nothing /metrics does not serve (the
    HTTP client's families appear only once a client exists)."""
    r = run_moor(["serve", "--help"])
    assert r.returncode == 0
    listed = help_series(r.stdout)
    assert len(listed) > 50, r.stdout[-2000:]
    text = server.metrics_text()
    served = types_of(text)
    for name, typ in served.items():
        assert name in listed, f"{name} is on /metrics but not in --help"
        assert listed[name][0] == typ, (name, listed[name], typ)
    for name, (typ, unit, labels) in listed.items():
        if not name.startswith("moor_http_client_"):
            assert name in served, f"--help lists {name}, /metrics has not"
        assert unit, name
        # Every label the help names is a label some sample carries.
        for lab in labels:
            if name in served:
                assert re.search(rf"^{name}(_bucket)?\{{[^}}]*\b{lab}=",
                                 text, re.M), (name, lab)


def test_monitoring_doc_lists_every_series():
    """docs/monitoring.md's table of series is generated (make docs) from
    the table /metrics reads its HELP lines from; a series added without
    regenerating it fails here."""
    from conftest import REPO
    r = run_moor(["serve", "--metrics-md"])
    assert r.returncode == 0
    doc = (REPO / "docs" / "monitoring.md").read_text()
    begin = "<!-- generated by make docs: moor serve --metrics-md -->\n"
    end = "<!-- end of generated part -->"
    part = doc.split(begin, 1)[1].split(end, 1)[0]
    assert part == r.stdout, "docs/monitoring.md is stale: run make docs"
    for line in r.stdout.splitlines()[2:]:
        assert re.match(r"^\| `moor_[a-z_]+` \| (counter|gauge|histogram) "
                        r"\| [^|]+ \|", line), line


def test_connections_by_protocol(server):
    """moor_connections_by_protocol counts open connections by what they
    speak: a WebSocket, an SSE subscriber, and the HTTP request reading
    the page."""
    import socket
    from wsutil import WsConn

    before = server.metrics()
    w = WsConn(server.port, timeout=5)
    assert w.handshake("/echo").status == 101
    sse = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sse.sendall(b"GET /sub/news HTTP/1.1\r\nHost: x\r\n"
                b"Accept: text/event-stream\r\n\r\n")
    assert b" 200 " in sse.recv(4096)
    try:
        m = server.metrics()
        for proto, extra in (("websocket", 1), ("sse", 1)):
            assert m.get_value("moor_connections_by_protocol",
                               protocol=proto) == \
                before.get_value("moor_connections_by_protocol",
                                 protocol=proto) + extra, proto
        assert m.get_value("moor_connections_by_protocol",
                           protocol="http") >= 1
        assert m.get_value("moor_connections_by_protocol",
                           protocol="other") == 0
    finally:
        w.close()
        sse.close()
