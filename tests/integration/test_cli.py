"""The command line: --help, flag and environment parsing, exit codes."""

import re
from pathlib import Path

import pytest

from conftest import Conn, run_moor

# Every flag of `moor serve` and its default as --help must show it.
# None: a boolean switch (its default is off; --help need not print it).
FLAGS = {
    "listen": "127.0.0.1:8080",
    "max-conns": "10000",
    "accept-rate": "2000",
    "accept-burst": "500",
    "header-timeout": "10s",
    "body-timeout": "30s",
    "idle-timeout": "60s",
    "write-timeout": "30s",
    "linger-timeout": "2s",
    "shutdown-timeout": "10s",
    "max-header-bytes": "8KiB",
    "max-headers": "100",
    "max-body": "1MiB",
    "queue-limit": "1MiB",
    "read-buffer": "64KiB",
    "memory-limit": "0",
    "log-level": "info",
    "mem-trace": None,
}


def flag_sections(help_text):
    """{flag name: its help text up to the next flag line}, with whitespace
    folded (so wrapped lines read as one). A flag line starts with
    whitespace and --name; mentions of other flags inside a description do
    not start a section."""
    out = {}
    name = None
    for line in help_text.splitlines():
        m = re.match(r"^\s{1,8}--([a-z][a-z0-9-]*)\b(.*)$", line)
        if m:
            name = m.group(1)
            out.setdefault(name, "")
            out[name] += " " + m.group(2)
        elif name and line.strip():
            out[name] += " " + line
        else:
            name = None
    return {k: " ".join(v.split()) for k, v in out.items()}


def test_help_lists_every_flag_with_default():
    r = run_moor(["serve", "--help"])
    assert r.returncode == 0, r.stderr
    sections = flag_sections(r.stdout)
    missing = [f for f in FLAGS if f not in sections]
    assert not missing, f"--help does not list {missing}:\n{r.stdout}"
    for flag, default in FLAGS.items():
        if default is None:
            continue
        sec = sections[flag]
        assert re.search(r"default:?\s*" + re.escape(default) + r"(?![\w.])",
                         sec), \
            f"--{flag}: default {default!r} not shown in {sec!r}"


def test_help_shows_env_names():
    r = run_moor(["serve", "--help"])
    assert r.returncode == 0
    for flag in FLAGS:
        env = "MOOR_" + flag.upper().replace("-", "_")
        assert env in r.stdout, f"--help does not name {env}"


@pytest.mark.parametrize("flag,value,expect", [
    ("--idle-timeout", "10x",
     'moor: invalid value "10x" for --idle-timeout: expected a duration '
     'like 250ms, 10s, 2m'),
    ("--header-timeout", "abc",
     'moor: invalid value "abc" for --header-timeout: expected a duration'),
    ("--max-body", "12XB",
     'moor: invalid value "12XB" for --max-body: expected a size like '
     '512B, 64KiB, 1MiB'),
    ("--max-conns", "lots",
     'moor: invalid value "lots" for --max-conns: expected a whole number'),
    ("--max-conns", "0",
     'moor: invalid value "0" for --max-conns: expected a whole number '
     'from 1 to'),
    ("--max-conns=-1", None,
     'moor: invalid value "-1" for --max-conns: expected'),
    ("--log-level", "chatty",
     'moor: invalid value "chatty" for --log-level: expected'),
    ("--listen", "nohostport",
     'moor: invalid value "nohostport" for --listen: expected'),
])
def test_bad_value_exit_2_one_line(flag, value, expect):
    r = run_moor(["serve", flag] + ([value] if value is not None else []))
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    assert lines[0].startswith(expect), f"{lines[0]!r} !~ {expect!r}"
    assert r.stdout == "", "nothing on stdout for a usage error"


def test_bad_value_equals_form():
    r = run_moor(["serve", "--idle-timeout=10x"])
    assert r.returncode == 2
    assert 'invalid value "10x" for --idle-timeout' in r.stderr


def test_missing_value():
    r = run_moor(["serve", "--idle-timeout"])
    assert r.returncode == 2, r.stderr
    assert "--idle-timeout" in r.stderr


def test_unknown_flag():
    r = run_moor(["serve", "--foo"])
    assert r.returncode == 2
    assert 'unknown flag "--foo"' in r.stderr


def test_bad_env_value_names_the_variable():
    r = run_moor(["serve"], env={"MOOR_IDLE_TIMEOUT": "10x"})
    assert r.returncode == 2, r.stderr
    assert 'invalid value "10x"' in r.stderr
    assert "MOOR_IDLE_TIMEOUT" in r.stderr or "--idle-timeout" in r.stderr


def test_no_command_usage_exit_2():
    r = run_moor([])
    assert r.returncode == 2
    assert "usage" in (r.stdout + r.stderr).lower()


def test_unknown_command_exit_2():
    r = run_moor(["frobnicate"])
    assert r.returncode == 2
    assert "usage" in (r.stdout + r.stderr).lower()


def test_version():
    r = run_moor(["--version"])
    assert r.returncode == 0
    header = (Path(__file__).resolve().parents[2] / "include" /
              "moor.h").read_text()
    version = ".".join(
        re.search(rf"#define MOOR_VERSION_{k} (\d+)", header).group(1)
        for k in ("MAJOR", "MINOR", "PATCH"))
    assert r.stdout.strip() == f"moor {version}"


def test_banner_lists_endpoints(server):
    out = server.stdout_text()
    first = out.splitlines()[0]
    assert f"http://127.0.0.1:{server.port}" in first
    for path in ("/healthz", "/metrics", "/debug/mem"):
        assert f"http://127.0.0.1:{server.port}{path}" in out, out


def test_logs_are_key_value(server):
    server.get("/healthz")
    err = server.stderr_text()
    lines = [l for l in err.splitlines() if l.strip()]
    assert lines, "no log lines at start-up"
    for l in lines:
        assert re.match(r'^ts=\S+ level=(debug|info|warn|error) msg="', l), \
            f"not a key=value log line: {l!r}"


def idle_close_time(server, limit):
    """Seconds from the end of a response until the server closes the
    keep-alive connection, or None within limit."""
    with Conn(server.port) as c:
        r = c.request("GET", "/healthz")
        assert r.status == 200
        return c.wait_closed(limit)


def test_env_var_applies(moor):
    s = moor(env={"MOOR_IDLE_TIMEOUT": "300ms"})
    t = idle_close_time(s, 5.0)
    assert t is not None and t < 2.0, \
        f"MOOR_IDLE_TIMEOUT=300ms not applied (closed after {t})"


def test_flag_beats_env(moor):
    s = moor("--idle-timeout", "5s", env={"MOOR_IDLE_TIMEOUT": "300ms"})
    t = idle_close_time(s, 1.5)
    assert t is None, f"env beat the flag: closed after {t:.2f} s"


def test_empty_env_counts_as_unset(moor):
    s = moor(env={"MOOR_IDLE_TIMEOUT": ""})
    assert s.get("/healthz").status == 200


def test_port_in_use_exit_1():
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = run_moor(["serve", "--listen", f"127.0.0.1:{port}"])
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert str(port) in r.stderr


def test_log_level_error_quiet(moor):
    s = moor("--log-level", "error")
    assert s.get("/healthz").status == 200
    s.get("/nope")
    rc, err = s.stop()
    assert rc == 0
    assert "level=info" not in err and "level=warn" not in err, err


def test_limits_doc_is_current():
    """docs/limits.md is generated from the flag table (make docs); a flag
    added without regenerating it fails here."""
    from conftest import REPO
    r = run_moor(["serve", "--limits-md"])
    assert r.returncode == 0
    doc = (REPO / "docs" / "limits.md").read_text()
    assert r.stdout == doc, "docs/limits.md is stale: run make docs"


def test_port_taken_by_another_moor_exit_1(server):
    """A second `moor serve` on a port the first holds does not share it
    (no SO_REUSEPORT by default): it says so and exits 1, and the first
    keeps serving."""
    r = run_moor(["serve", "--listen", f"127.0.0.1:{server.port}"])
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Address already in use" in r.stderr, r.stderr
    with Conn(server.port) as c:
        c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().status == 200
