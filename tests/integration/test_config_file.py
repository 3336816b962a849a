"""The config file of `moor serve` (docs/config.md): --config FILE (and
MOOR_CONFIG) starts the server it describes, a bad file is a usage error
(exit 2) naming FILE:LINE, --print-config prints what reads back to the
same configuration, and SIGHUP rereads the file: the reloadable settings
change at once (seen from outside: the allowed WebSocket origins, the log
level), every other change is logged as needing a restart, a broken file
keeps the running settings, a command-line flag still beats the file, and
moor_config_reloads_total counts it all."""

import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (HOST, SUITE_IP_LIMITS, Server, base_env, moor_bin,
                      run_moor, servers_of, slack)
import wsutil

EVIL = "https://evil.example"
GOOD = "https://good.example"


class ConfServer(Server):
    """A Server started without the suite's --listen flag, so the listener
    comes from the config file (a flag would beat the file)."""

    def __init__(self, args, env, workdir):  # pylint: disable=super-init-not-called
        self.args = list(args)
        self.workdir = Path(workdir)
        self.out_path = self.workdir / "stdout.txt"
        self.err_path = self.workdir / "stderr.txt"
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.cmd = [str(moor_bin()), "serve"] + self.args
        self.proc = subprocess.Popen(
            self.cmd, env=base_env({**SUITE_IP_LIMITS, **(env or {})}),
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err)
        self.port = None
        self.admin_port = None
        self.returncode = None
        self._wait_banner(10.0)


@pytest.fixture
def confmoor(tmp_path):
    """Factory: confmoor(*args, env=None) -> a started ConfServer."""
    yield from servers_of(ConfServer, tmp_path)


def origin_status(port, origin):
    """The status of a WebSocket upgrade of /echo with this Origin."""
    with socket.create_connection((HOST, port), timeout=5) as s:
        s.sendall(wsutil.handshake_request(
            "/echo", headers=[("Origin", origin)]))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            assert chunk, f"closed before a response: {data!r}"
            data += chunk
    return int(data.split(b" ", 2)[1])


def reloads(srv, result):
    return srv.metric("moor_config_reloads_total", result=result)


def hup_and_wait(srv, result, want):
    """SIGHUP, then waits until moor_config_reloads_total{result} is want."""
    srv.proc.send_signal(signal.SIGHUP)
    m = srv.wait_metric(lambda m: m.get_value(
        "moor_config_reloads_total", result=result) == want)
    assert m.get_value("moor_config_reloads_total", result=result) == want


def test_config_file_starts_that_server(confmoor, tmp_path):
    conf = tmp_path / "moor.conf"
    conf.write_text("# the listener\n"
                    "listen = 127.0.0.1:0\n"
                    "\n"
                    f'allowed-origins "{GOOD}"   # quoted\n'
                    "max-conns 50\n")
    # An absolute path, as a systemd unit gives (/etc/moor/moor.conf).
    s = confmoor("--config", str(conf.resolve()))
    assert s.get("/healthz").status == 200
    assert origin_status(s.port, EVIL) == 403
    assert origin_status(s.port, GOOD) == 101
    assert 'max_conns=50' in s.stderr_text()
    # No reload yet, and both series exist.
    assert reloads(s, "ok") == 0 and reloads(s, "failed") == 0


def test_moor_config_env(confmoor, tmp_path):
    conf = tmp_path / "env.conf"
    conf.write_text("listen 127.0.0.1:0\nmax-conns 42\n")
    s = confmoor(env={"MOOR_CONFIG": str(conf)})
    assert s.get("/healthz").status == 200
    assert "max_conns=42" in s.stderr_text()


@pytest.mark.parametrize("text, want", [
    ("listen 127.0.0.1:0\n# fine\n\nlistn 127.0.0.1:0\n",
     ':4: unknown setting "listn" (did you mean "listen"?)'),
    ("idle-timeout 10x\n",
     ':1: invalid value "10x" for --idle-timeout: expected a duration'),
    ("max-conns 5\nmax-conns 6\n",
     ':2: "max-conns" is set twice (first on line 1)'),
    ("listen \"127.0.0.1:0\n",
     ':1: unterminated double quote in the value of "listen"'),
])
def test_bad_file_is_a_usage_error(tmp_path, text, want):
    conf = tmp_path / "bad.conf"
    conf.write_text(text)
    r = run_moor(["serve", "--config", str(conf)])
    assert r.returncode == 2, r
    assert r.stderr.startswith(f"moor: {conf}{want}"), r.stderr
    assert r.stdout == ""


def test_missing_file_is_a_usage_error(tmp_path):
    missing = tmp_path / "nope.conf"
    r = run_moor(["serve", "--config", str(missing)])
    assert r.returncode == 2
    assert r.stderr == (f"moor: cannot read config file {missing}: "
                        "No such file or directory\n")
    r = run_moor(["serve", "--config"])
    assert r.returncode == 2
    assert "--config needs a" in r.stderr


def test_print_config_round_trip(confmoor, tmp_path):
    first = run_moor(["serve", "--print-config", "--listen", "127.0.0.1:0",
                      "--max-conns", "321", "--idle-timeout", "90s",
                      "--tls-tickets", "--influx-tags", " a=b "],
                     env={"MOOR_QUEUE_LIMIT": "2MiB"})
    assert first.returncode == 0, first.stderr
    text = first.stdout
    assert text.startswith("# moor serve configuration")
    for line in ("listen 127.0.0.1:0", "max-conns 321", "idle-timeout 90s",
                 "tls-tickets true", "queue-limit 2MiB",
                 'influx-tags " a=b "', 'tcp-listen ""'):
        assert f"\n{line}\n" in text, line
    # Every --help flag is a setting, each under its help comment.
    helptext = run_moor(["serve", "--help"]).stdout
    names = set(re.findall(r"^  --([a-z0-9-]+) ", helptext, re.M))
    names -= {"config", "print-config", "limits-md", "metrics-md", "man",
              "help"}
    settings = set(re.findall(r"^([a-z0-9-]+) ", text, re.M))
    assert names == settings
    assert re.search(r"\(SIGHUP\s(?:# )?applies it\)\nlog-level info\n",
                     text), "log-level is not marked reloadable"

    conf = tmp_path / "printed.conf"
    conf.write_text(text)
    second = run_moor(["serve", "--config", str(conf), "--print-config"])
    assert second.returncode == 0, second.stderr
    assert second.stdout == text
    # And it starts the same server.
    s = confmoor("--config", str(conf))
    assert s.get("/healthz").status == 200
    assert "max_conns=321" in s.stderr_text()


def test_precedence_flag_env_file(tmp_path):
    conf = tmp_path / "p.conf"
    conf.write_text("max-conns 5\nmax-headers 20\nmax-body 4KiB\n")
    r = run_moor(["serve", "--config", str(conf), "--max-conns", "7",
                  "--print-config"], env={"MOOR_MAX_HEADERS": "21"})
    assert r.returncode == 0, r.stderr
    assert "\nmax-conns 7\n" in r.stdout        # flag over file
    assert "\nmax-headers 21\n" in r.stdout     # env over file
    assert "\nmax-body 4KiB\n" in r.stdout      # file over default
    assert "\nidle-timeout 1m\n" in r.stdout    # default (60s)


@pytest.mark.wall(40)
def test_sighup_rereads_the_file(confmoor, tmp_path):
    conf = tmp_path / "moor.conf"
    conf.write_text("listen 127.0.0.1:0\nlog-level info\n")
    s = confmoor("--config", str(conf))
    assert origin_status(s.port, EVIL) == 101

    # Reloadable: allowed-origins. Not: listen, queue-limit.
    conf.write_text("listen 127.0.0.1:1\nlog-level info\nqueue-limit 9KiB\n"
                    f"allowed-origins {GOOD}\n")
    hup_and_wait(s, "ok", 1)
    assert s.wait_log('setting=listen running="127.0.0.1:0" '
                      'file="127.0.0.1:1"')
    err = s.stderr_text()
    assert ('msg="config: setting changed; it needs a restart, the running '
            'value stays" setting=queue-limit running="1MiB" file="9KiB"') \
        in err
    assert (f'msg="config: setting changed, applied" '
            f'setting=allowed-origins was="" now="{GOOD}"') in err
    assert origin_status(s.port, EVIL) == 403
    assert origin_status(s.port, GOOD) == 101
    assert s.get("/healthz").status == 200  # still on the old port

    # log-level warn: from now on the info lines stop.
    conf.write_text("listen 127.0.0.1:0\nlog-level warn\n"
                    f"allowed-origins {GOOD}\n")
    hup_and_wait(s, "ok", 2)
    signals = s.stderr_text().count('msg="signal" sig=HUP')
    assert signals == 2
    hup_and_wait(s, "ok", 3)
    assert s.stderr_text().count('msg="signal" sig=HUP') == signals

    # A broken file: the error with its line, the old settings stay.
    conf.write_text(f"allowed-origins {EVIL}\nlog-level debug\nlistn 1\n")
    hup_and_wait(s, "failed", 1)
    assert s.wait_log("config reload failed, the running settings stay")
    assert f'{conf}:3: unknown setting "listn"' in s.stderr_text()
    assert reloads(s, "ok") == 3
    assert s.get("/healthz").status == 200
    assert origin_status(s.port, EVIL) == 403
    assert origin_status(s.port, GOOD) == 101
    assert 'level=debug' not in s.stderr_text()

    # The file removed: a failed reload too, the server carries on.
    conf.unlink()
    hup_and_wait(s, "failed", 2)
    assert s.wait_log(f"cannot read config file {conf}")
    assert origin_status(s.port, GOOD) == 101


def test_sighup_flag_still_beats_the_file(confmoor, tmp_path):
    conf = tmp_path / "moor.conf"
    conf.write_text(f"listen 127.0.0.1:0\nallowed-origins {EVIL}\n")
    s = confmoor("--config", str(conf), "--allowed-origins", GOOD)
    assert origin_status(s.port, GOOD) == 101
    assert origin_status(s.port, EVIL) == 403
    conf.write_text("listen 127.0.0.1:0\nallowed-origins https://x.example\n"
                    "log-level debug\n")
    hup_and_wait(s, "ok", 1)
    assert s.wait_log("setting=log-level")
    assert "setting=allowed-origins" not in s.stderr_text()
    assert origin_status(s.port, GOOD) == 101
    assert origin_status(s.port, "https://x.example") == 403


def test_sighup_without_config_counts_nothing(moor):
    s = moor()
    s.proc.send_signal(signal.SIGHUP)
    assert s.wait_log("nothing to reload on SIGHUP")
    assert reloads(s, "ok") == 0 and reloads(s, "failed") == 0


def tls_port(srv):
    m = re.search(r"https://127\.0\.0\.1:(\d+) +TLS listener",
                  srv.stdout_text())
    assert m, srv.stdout_text()
    return int(m.group(1))


def silent_conn_lasts(port, wait):
    """Opens a TCP connection to the TLS listener, sends nothing, and
    returns the seconds until moor closes it (None: open after wait)."""
    start = time.monotonic()
    with socket.create_connection((HOST, port), timeout=wait) as s:
        try:
            data = s.recv(1)
        except socket.timeout:
            return None
        except ConnectionResetError:
            data = b""
        assert data == b"", data
    return time.monotonic() - start


@pytest.mark.wall(40)
def test_sighup_changes_handshake_timeout(confmoor, tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-subj", "/CN=localhost", "-days", "1"],
                   check=True, capture_output=True, timeout=30)
    conf = tmp_path / "tls.conf"
    common = (f"listen 127.0.0.1:0\ntls-listen 127.0.0.1:0\n"
              f"tls-cert {cert}\ntls-key {key}\n")
    conf.write_text(common + "handshake-timeout 30s\n")
    s = confmoor("--config", str(conf))
    port = tls_port(s)
    # 30 s: a silent client is still there after a second.
    assert silent_conn_lasts(port, slack(1.0)) is None
    conf.write_text(common + "handshake-timeout 300ms\n")
    hup_and_wait(s, "ok", 1)
    assert s.wait_log('setting=handshake-timeout was="30s" now="300ms"')
    took = silent_conn_lasts(port, slack(5.0))
    assert took is not None and took < slack(3.0), took
    m = s.wait_metric(lambda m: m.get_value(
        "moor_closed_total", reason="handshake_timeout") >= 1)
    assert m.get_value("moor_closed_total", reason="handshake_timeout") >= 1


def keepalive_lasts(port, wait):
    """One request on a keep-alive connection, then silence: the seconds
    until moor closes it (None: still open after wait)."""
    with socket.create_connection((HOST, port), timeout=wait) as c:
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\nok" not in data:
            data += c.recv(4096)
        start = time.monotonic()
        try:
            more = c.recv(1)
        except socket.timeout:
            return None
        except ConnectionResetError:
            more = b""
        assert more == b"", more
    return time.monotonic() - start


def status_of_new_conn(port):
    with socket.create_connection((HOST, port), timeout=5) as c:
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = c.recv(4096)
    return int(data.split(b" ", 2)[1])


@pytest.mark.wall(40)
def test_sighup_changes_limits_of_the_running_server(confmoor, tmp_path):
    """The settings --help marks SIGHUP take effect on a running server
    when the file changes: --idle-timeout on the next keep-alive wait,
    --max-conns at the next accept."""
    conf = tmp_path / "moor.conf"
    conf.write_text("listen 127.0.0.1:0\nidle-timeout 30s\n")
    s = confmoor("--config", str(conf))
    assert keepalive_lasts(s.port, slack(1.0)) is None
    conf.write_text("listen 127.0.0.1:0\nidle-timeout 200ms\nmax-conns 2\n")
    hup_and_wait(s, "ok", 1)
    assert s.wait_log('setting=idle-timeout was="30s" now="200ms"')
    assert s.wait_log('setting=max-conns was="10000" now="2"')
    took = keepalive_lasts(s.port, slack(5.0))
    assert took is not None and took < slack(2.0), took
    # Two connections held open: the third is refused (503) at accept.
    held = [socket.create_connection((HOST, s.port), timeout=5)
            for _ in range(2)]
    try:
        time.sleep(0.2)
        assert status_of_new_conn(s.port) == 503
    finally:
        for c in held:
            c.close()
    m = s.wait_metric(lambda m: m.get_value(
        "moor_refused_total", reason="max_conns") >= 1)
    assert m.get_value("moor_refused_total", reason="max_conns") >= 1
