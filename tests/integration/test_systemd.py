"""moor under systemd: the notification protocol (src/sdnotify.c) heard on
a NOTIFY_SOCKET of the test's own, the unit that `make install` installs
(dist/moor.service.in), and the manual page moor(1) (docs/moor.1, made by
`moor serve --man` from the flag table)."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import (HOST, REPO, SANITIZER_MARKS, Conn, assert_clean_exit,
                      base_env, moor_bin, run_moor, slack, tail_of)


# ---- a NOTIFY_SOCKET of our own --------------------------------------------

class Sink:
    """An AF_UNIX datagram socket that plays the service manager. name: a
    path, or "@name" for the abstract namespace (as NOTIFY_SOCKET writes
    it). Each datagram is kept as a dict of its KEY=value lines."""

    def __init__(self, name):
        self.name = name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + name[1:] if name.startswith("@") else name)
        self.got = []

    def close(self):
        self.sock.close()

    def _recv(self, timeout):
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return None
        msg = dict(l.split("=", 1) for l in data.decode().split("\n") if l)
        self.got.append(msg)
        return msg

    def wait(self, key, timeout=5.0):
        """The next message with key (others on the way are kept in
        .got); fails the test after timeout seconds (scaled for the
        sanitizer build)."""
        end = time.monotonic() + slack(timeout)
        while True:
            left = end - time.monotonic()
            assert left > 0, f"no {key} within {timeout} s; got {self.got}"
            msg = self._recv(left)
            if msg is not None and key in msg:
                return msg

    def drain(self, seconds):
        """Every message that arrives within seconds."""
        out = []
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            msg = self._recv(left)
            if msg is not None:
                out.append(msg)
        return out


@pytest.fixture
def sink():
    d = tempfile.mkdtemp(prefix="moor-notify-")  # short: sun_path is 108
    s = Sink(os.path.join(d, "notify"))
    yield s
    s.close()
    shutil.rmtree(d, ignore_errors=True)


class Proc:
    """`moor serve` started as a service manager would: no banner read,
    the port learnt from READY=1's STATUS=."""

    def __init__(self, args, env, workdir, watchdog_self=False):
        self.err_path = Path(workdir) / "stderr.txt"
        self._err = open(self.err_path, "wb")
        cmd = [str(moor_bin()), "serve"] + list(args)
        if watchdog_self:
            # sd_watchdog_enabled() wants WATCHDOG_PID to be moor's own
            # pid: the shell's, which exec keeps.
            cmd = ["sh", "-c", 'WATCHDOG_PID=$$ exec "$@"', "sh"] + cmd
        self.proc = subprocess.Popen(cmd, env=base_env(env),
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=self._err)

    def stderr_text(self):
        return self.err_path.read_bytes().decode(errors="replace")

    def wait(self, timeout=15):
        return self.proc.wait(timeout=slack(timeout))

    def finish(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._err.close()


@pytest.fixture
def serve(tmp_path):
    """serve(*args, env=..., watchdog_self=False) -> Proc; every process
    is killed at teardown and its stderr checked for sanitizer reports."""
    procs = []

    def start(*args, env=None, watchdog_self=False):
        p = Proc(args, env, tempfile.mkdtemp(dir=tmp_path), watchdog_self)
        procs.append(p)
        return p

    yield start
    problems = []
    for p in procs:
        p.finish()
        err = p.stderr_text()
        if any(m in err for m in SANITIZER_MARKS):
            problems.append(tail_of(err, 60))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def listen_port(ready):
    m = re.search(r"\blisten=127\.0\.0\.1:(\d+)\b", ready["STATUS"])
    assert m, ready
    return int(m.group(1))


def healthz(port):
    with Conn(port) as c:
        return c.request("GET", "/healthz").status


# ---- the notifications -----------------------------------------------------

def test_ready_once_listening(serve, sink):
    """READY=1 comes with MAINPID= and a STATUS= naming every listener,
    and only when they accept: a connection made the moment it arrives is
    answered."""
    p = serve("--listen", f"{HOST}:0", "--admin-listen", f"{HOST}:0",
              env={"NOTIFY_SOCKET": sink.name})
    ready = sink.wait("READY")
    port = listen_port(ready)
    assert healthz(port) == 200
    assert ready["READY"] == "1"
    assert ready["MAINPID"] == str(p.proc.pid)
    admin = re.search(r"\badmin_listen=127\.0\.0\.1:(\d+)\b", ready["STATUS"])
    assert admin, ready
    with Conn(int(admin.group(1))) as c:
        assert c.request("GET", "/metrics").status == 200
    assert [m for m in sink.got if "READY" in m] == [ready]
    p.proc.send_signal(signal.SIGTERM)
    assert_clean_exit(p.wait(), p.stderr_text())


def test_no_ready_when_a_port_is_taken(serve, sink):
    """A listener that cannot bind: exit 1 and no READY=1, so the manager
    sees a failed start, not a service that is up."""
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        # The public listener binds, the TCP one cannot: READY=1 must wait
        # for every listener, not the first.
        p = serve("--listen", f"{HOST}:0", "--tcp-listen", f"{HOST}:{port}",
                  env={"NOTIFY_SOCKET": sink.name})
        rc = p.wait()
    assert rc == 1, (rc, p.stderr_text())
    assert "--tcp-listen" in p.stderr_text()
    assert sink.drain(0.2) == [] and sink.got == []


def test_ready_on_an_abstract_socket(serve):
    """NOTIFY_SOCKET=@name: a socket in the abstract namespace."""
    s = Sink(f"@moor-test-{os.getpid()}-{time.monotonic_ns()}")
    try:
        p = serve("--listen", f"{HOST}:0", env={"NOTIFY_SOCKET": s.name})
        ready = s.wait("READY")
        assert healthz(listen_port(ready)) == 200
        p.proc.send_signal(signal.SIGTERM)
        assert p.wait() == 0
    finally:
        s.close()


def test_watchdog_fed_by_the_loop(serve, sink):
    """WATCHDOG_USEC=200000 for our pid: WATCHDOG=1 every 100 ms or so,
    at least 3 in a second."""
    p = serve("--listen", f"{HOST}:0", watchdog_self=True,
              env={"NOTIFY_SOCKET": sink.name, "WATCHDOG_USEC": "200000"})
    sink.wait("READY")
    got = sink.drain(1.0)
    fed = [m for m in got if m.get("WATCHDOG") == "1"]
    assert len(fed) >= 3, got
    assert len(fed) <= 20, got  # half the period, not a busy loop
    p.proc.send_signal(signal.SIGTERM)
    assert p.wait() == 0


def test_watchdog_for_another_pid_is_not_ours(serve, sink):
    """WATCHDOG_PID naming another process (a parent's variable that
    leaked): moor does not feed a watchdog that is not its own."""
    p = serve("--listen", f"{HOST}:0",
              env={"NOTIFY_SOCKET": sink.name, "WATCHDOG_USEC": "200000",
                   "WATCHDOG_PID": "1"})
    sink.wait("READY")
    assert [m for m in sink.drain(0.5) if "WATCHDOG" in m] == []
    p.proc.send_signal(signal.SIGTERM)
    assert p.wait() == 0


def test_sigterm_says_stopping(serve, sink):
    p = serve("--listen", f"{HOST}:0", env={"NOTIFY_SOCKET": sink.name})
    port = listen_port(sink.wait("READY"))
    with Conn(port) as held:  # the drain has something to wait for
        held.request("GET", "/healthz")
        p.proc.send_signal(signal.SIGTERM)
        stopping = sink.wait("STOPPING")
    assert stopping["STOPPING"] == "1"
    assert_clean_exit(p.wait(), p.stderr_text())


def test_sighup_says_reloading_then_ready(serve, sink):
    p = serve("--listen", f"{HOST}:0", env={"NOTIFY_SOCKET": sink.name})
    ready = sink.wait("READY")
    n = len(sink.got)
    p.proc.send_signal(signal.SIGHUP)
    reloading = sink.wait("RELOADING")
    again = sink.wait("READY")
    assert [m for m in sink.got[n:] if "RELOADING" in m or "READY" in m] == \
        [reloading, again]
    assert reloading["RELOADING"] == "1"
    # The clock newer managers (Type=notify-reload) check.
    assert 0 < int(reloading["MONOTONIC_USEC"]) <= \
        time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert again["STATUS"] == ready["STATUS"]
    assert healthz(listen_port(again)) == 200
    p.proc.send_signal(signal.SIGTERM)
    assert_clean_exit(p.wait(), p.stderr_text())


# ---- the unit --------------------------------------------------------------

def help_default(flag):
    """A flag's default as `moor serve --help` shows it (another path
    than --limits-md, which dist/gen-unit.sh reads)."""
    text = " ".join(run_moor(["serve", "--help"]).stdout.split())
    m = re.search(rf"--{flag} \S+ .*?\(default (\S+), env ", text)
    assert m, flag
    return m.group(1)


def unit_settings(text):
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, v = line.split("=", 1)
            out.setdefault(k, []).append(v)
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """`make install` into a temporary prefix (the release build)."""
    prefix = tmp_path_factory.mktemp("sysd") / "prefix"
    subprocess.run(["make", "-s", "install", f"PREFIX={prefix}"], cwd=REPO,
                   check=True, capture_output=True, timeout=300)
    return prefix


def test_unit_settings(installed):
    unit = (installed / "lib/systemd/system/moor.service").read_text()
    s = unit_settings(unit)
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["ExecStart"] == [f"{installed}/bin/moor serve $MOOR_ARGS"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["WatchdogSec"] == ["30s"]
    assert s["CapabilityBoundingSet"] == [""]
    assert s["DynamicUser"] == ["yes"] and s["ProtectSystem"] == ["strict"]
    # From the flag table's defaults: --max-conns plus room for the rest,
    # and longer than the drain may take.
    assert s["LimitNOFILE"] == [str(int(help_default("max-conns")) + 1024)]
    shutdown = help_default("shutdown-timeout")
    assert shutdown.endswith("s") and not shutdown.endswith("ms"), shutdown
    assert s["TimeoutStopSec"] == [f"{int(shutdown[:-1]) + 10}s"]
    assert "@" not in unit.replace("@system-service", "")


def test_unit_follows_the_defaults(tmp_path):
    """dist/gen-unit.sh reads the defaults the binary prints: another
    --max-conns or --shutdown-timeout, another unit; a binary without the
    table, no unit at all."""
    fake = tmp_path / "moor"
    fake.write_text("#!/bin/sh\n"
                    "echo '| `--max-conns` | `500` | `MOOR_MAX_CONNS` | x |'\n"
                    "echo '| `--shutdown-timeout` | `2m` | `MOOR_X` | x |'\n")
    fake.chmod(0o755)
    gen = REPO / "dist/gen-unit.sh"
    template = (REPO / "dist/moor.service.in").read_text()
    r = subprocess.run([str(gen), str(fake), "/opt/moor/bin"], input=template,
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    s = unit_settings(r.stdout)
    assert s["LimitNOFILE"] == ["1524"]
    assert s["TimeoutStopSec"] == ["130s"]
    assert s["ExecStart"] == ["/opt/moor/bin/moor serve $MOOR_ARGS"]

    fake.write_text("#!/bin/sh\necho '| `--max-conns` | `lots` | x |'\n")
    r = subprocess.run([str(gen), str(fake), "/opt/moor/bin"], input=template,
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and r.stdout == ""
    assert "--max-conns" in r.stderr


def test_unit_verifies(installed):
    """systemd-analyze verify finds nothing wrong with the unit (lines about
    other units, which a container may lack, are not ours)."""
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("systemd-analyze is not installed")
    unit = installed / "lib/systemd/system/moor.service"
    # Documentation=man:moor(1) is checked with man: find ours.
    env = dict(os.environ, MANPATH=str(installed / "share/man"))
    r = subprocess.run([tool, "verify", str(unit)], capture_output=True,
                       text=True, timeout=60, env=env)
    ours = [l for l in (r.stdout + r.stderr).splitlines()
            if "moor.service" in l]
    assert ours == [], "\n".join(ours)


def test_unit_runs_under_a_user_manager(installed, tmp_path):
    """A transient service with the unit's Type=notify and watchdog:
    systemd-run returns once READY=1 has come. Needs a user manager, which
    a container or CI runner usually lacks: then it is skipped."""
    tool = shutil.which("systemd-run")
    if not tool:
        pytest.skip("systemd-run is not installed")
    name = f"moor-test-{os.getpid()}"
    r = subprocess.run(
        [tool, "--user", "--quiet", f"--unit={name}",
         "-p", "Type=notify", "-p", "NotifyAccess=main",
         "-p", "WatchdogSec=2s", "-p", "TimeoutStartSec=20s",
         str(installed / "bin/moor"), "serve", "--listen", f"{HOST}:0"],
        capture_output=True, text=True, timeout=60)
    if r.returncode != 0 and re.search(
            r"Failed to connect to bus|Failed to create bus connection|"
            r"No medium found|DBUS_SESSION_BUS_ADDRESS", r.stderr):
        pytest.skip(f"no systemd user manager here: {r.stderr.strip()}")
    try:
        assert r.returncode == 0, r.stderr
        show = subprocess.run(
            ["systemctl", "--user", "show", name, "-p", "ActiveState",
             "-p", "StatusText", "-p", "NRestarts"],
            capture_output=True, text=True, timeout=30).stdout
        assert "ActiveState=active" in show, show
        m = re.search(r"listen=127\.0\.0\.1:(\d+)", show)
        assert m, show
        assert healthz(int(m.group(1))) == 200
        time.sleep(3)  # past WatchdogSec: fed, so not restarted
        show = subprocess.run(
            ["systemctl", "--user", "show", name, "-p", "ActiveState",
             "-p", "NRestarts"], capture_output=True, text=True,
            timeout=30).stdout
        assert "ActiveState=active" in show and "NRestarts=0" in show, show
    finally:
        subprocess.run(["systemctl", "--user", "stop", name],
                       capture_output=True, timeout=60)


# ---- the manual page -------------------------------------------------------

MAN = REPO / "docs" / "moor.1"


def roff_escape(s):
    return s.replace("\\", "\\e").replace("-", "\\-")


def test_man_page_is_current():
    """docs/moor.1 is generated from the flag table (make docs)."""
    r = run_moor(["serve", "--man"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == MAN.read_text(), "docs/moor.1 is stale: run make docs"


def test_man_page_has_every_flag_of_help():
    help_text = run_moor(["serve", "--help"]).stdout
    flags = re.findall(r"^  (?:-h, )?--([a-z0-9-]+)", help_text, re.M)
    assert len(flags) > 70 and "max-conns" in flags and "man" in flags
    man = MAN.read_text()
    for f in flags:
        assert re.search(r"^\\fB(\\-h, )?" + re.escape(roff_escape("--" + f))
                         + r"( [A-Z]+)?\\fR", man, re.M), f
    options = man.split(".SH OPTIONS\n")[1].split(".SH ")[0]
    assert options.count(".TP\n") == len(flags)


def test_man_page_is_valid_roff():
    """Only the requests the generator means begin a line: a help text
    starting with '.' or a quote would be one otherwise."""
    known = (".TH ", ".SH ", ".TP", ".PP", ".br", ".B ", ".BR ", ".ad ",
             ".nh", ".\\\"")
    for n, line in enumerate(MAN.read_text().splitlines(), 1):
        if line.startswith((".", "'")):
            assert line.startswith(known), f"docs/moor.1:{n}: {line}"
    groff = shutil.which("groff")
    if not groff:
        pytest.skip("groff is not installed")
    r = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z", str(MAN)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_man_renders():
    man = shutil.which("man")
    if not man:
        pytest.skip("man is not installed")
    r = subprocess.run([man, "-l", str(MAN)], capture_output=True, text=True,
                       timeout=30, env=dict(os.environ, MANWIDTH="80",
                                            MANPAGER="cat", PAGER="cat"))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    text = r.stdout
    for want in ("NAME", "SYNOPSIS", "COMMANDS", "OPTIONS", "ENVIRONMENT",
                 "SIGNALS", "FILES", "SEE ALSO", "moor serve",
                 "--max-conns N", "MOOR_MAX_CONNS", "SIGHUP",
                 "moor_refused_total{reason=\"max_conns\"}"):
        assert want in text, want
    assert max(len(l) for l in text.splitlines()) <= 80
