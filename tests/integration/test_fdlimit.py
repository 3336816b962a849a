"""Out of file descriptors (EMFILE): moor keeps serving the connections it
has, sheds the ones waiting in the backlog with its reserve fd instead of
spinning on accept, and accepts again once fds free up."""
import os
import resource
import socket
import time

from conftest import HOST, slack


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def get_healthz(port, timeout=5.0):
    s = socket.create_connection((HOST, port), timeout=timeout)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        return s.recv(4096)
    finally:
        s.close()


def test_emfile_recovers_without_busy_loop(moor):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        srv = moor("--accept-rate", "0")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert get_healthz(srv.port).startswith(b"HTTP/1.1 200")

    held = []
    try:
        for _ in range(120):
            s = socket.create_connection((HOST, srv.port), timeout=5)
            held.append(s)
        # The server is out of fds now; it must not spin.
        time.sleep(0.3)
        before = cpu_seconds(srv.proc.pid)
        time.sleep(1.0)
        used = cpu_seconds(srv.proc.pid) - before
        assert used < 0.3, f"server used {used:.2f} s of CPU in 1 s at EMFILE"
        # The connections it did take are still served.
        served = 0
        for s in held[:20]:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        for s in held[:20]:
            try:
                if s.recv(4096).startswith(b"HTTP/1.1 200"):
                    served += 1
            except OSError:
                pass
        assert served >= 10, f"only {served} of the first 20 were served"
    finally:
        for s in held:
            s.close()

    # Once fds are free, accepting resumes by itself.
    deadline = time.monotonic() + slack(5.0)
    while True:
        try:
            if get_healthz(srv.port).startswith(b"HTTP/1.1 200"):
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "accepting did not resume"
        time.sleep(0.1)
    refused = srv.metric("moor_refused_total", reason="fd_limit")
    paused = srv.metric("moor_accept_paused_total", reason="fd_limit")
    assert refused > 0 and paused > 0, (refused, paused)
