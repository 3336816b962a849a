#!/usr/bin/python3
"""bench/nginx_http.py - nginx as the server of the HTTP client benchmark
(issue 15): one nginx 1.22 worker serving plain HTTP and HTTPS on free
ports of 127.0.0.1 until it is killed.

    bench/nginx_http.py [--hold-ms 3000] [--dir DIR]

Settings: worker_processes 1, worker_connections 4096,
worker_rlimit_nofile 20000, keepalive_timeout 300s, keepalive_requests
100000, access_log off (but for /hold, below). TLS: a P-256 CA and a
certificate for IP 127.0.0.1 signed by it, made here with the openssl
CLI (as bench/run.sh's make_certs); nginx's TLS defaults otherwise
(TLS 1.2 and 1.3, session tickets on, no session cache, no HTTP/2).

Locations, on both ports:

    /        200 "ok\\n" at once (Content-Length), for load and warm-ups
    /healthz the same
    /allow   204 at once, no body: an auth service that lets everyone
             in (bench/run.sh --only auth, moor serve --auth url)
    /hold    200 "ok\\n" after --hold-ms (chunked): a client that fires N
             requests at once gets N connections, none freed before the
             last request is sent. Logged, one line per request, to
             hold.log as "$connection $connection_requests $scheme", so
             the distinct server-side connections can be counted.
             The hold must outlast the opening of all N connections:
             with 1 s, Go's client (one core, 1,000 TLS handshakes)
             once made 998 connections for 1,000 requests; the
             default, 3 s, has left room to spare.

The delay comes from the echo module's echo_sleep
(libnginx-mod-http-echo, a Debian package that bench/peers/build.sh
installs; /usr/lib/nginx/modules/ngx_http_echo_module.so). Core nginx has
no way to wait before answering; without the module /hold falls back to
limit_rate (the response trickles out at 64 bytes/s, which holds it about
2 s whatever --hold-ms says), and the banner says so.

Prints, once both ports answer:

    nginx listening on http://127.0.0.1:PORT (pid N)
    nginx listening on https://127.0.0.1:PORT (pid N)
    ca DIR/ca.pem
    hold-log DIR/hold.log
    hold echo_sleep 3.000 s        (or: hold limit_rate ~2 s)
    ready

N is the nginx master; its one child is the worker. SIGTERM or SIGINT
stops nginx and removes DIR (a temporary directory unless --dir is
given, which is kept). Run it pinned (taskset -c 0 ...): nginx inherits
the affinity. Only the standard library, nginx and openssl.
"""
import argparse
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make_certs(d):
    """d/ca.pem, d/cert.pem, d/key.pem: a P-256 CA and a certificate for
    IP 127.0.0.1 signed by it, valid two days."""
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n"
                "basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\n")
    p = lambda name: os.path.join(d, name)  # noqa: E731
    steps = [
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-nodes", "-keyout", p("ca.key"),
         "-out", p("ca.pem"), "-days", "2", "-subj", "/CN=moor bench CA"],
        ["openssl", "req", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-nodes", "-keyout", p("key.pem"),
         "-out", p("cert.csr"), "-subj", "/CN=127.0.0.1"],
        ["openssl", "x509", "-req", "-in", p("cert.csr"), "-CA", p("ca.pem"),
         "-CAkey", p("ca.key"), "-CAcreateserial", "-days", "2",
         "-extfile", p("ext.cnf"), "-out", p("cert.pem")],
        ["openssl", "verify", "-CAfile", p("ca.pem"), p("cert.pem")],
    ]
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"nginx_http: {' '.join(cmd[:3])} failed:\n{r.stderr}")


def config(d, plain, tls, hold_ms, echo):
    if echo:
        load = f"load_module {ECHO_MODULE};\n"
        hold = (f"echo_sleep {hold_ms / 1000:.3f};\n"
                "            echo \"ok\";")
    else:
        load = ""
        # Core nginx cannot wait before answering: the response (headers
        # and body, ~160 bytes) trickles out at 64 bytes/s instead.
        hold = "limit_rate 64;\n            return 200 \"ok\\n\";"
    tmp = {k: os.path.join(d, k) for k in
           ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    return f"""{load}worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log;
worker_rlimit_nofile 20000;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    keepalive_timeout 300s;
    keepalive_requests 100000;
    client_body_temp_path {tmp['body']};
    proxy_temp_path {tmp['proxy']};
    fastcgi_temp_path {tmp['fastcgi']};
    uwsgi_temp_path {tmp['uwsgi']};
    scgi_temp_path {tmp['scgi']};
    log_format hold '$connection $connection_requests $scheme';
    server {{
        listen 127.0.0.1:{plain};
        listen 127.0.0.1:{tls} ssl;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        default_type text/plain;
        location / {{
            return 200 "ok\\n";
        }}
        location = /allow {{
            return 204;
        }}
        location = /hold {{
            access_log {d}/hold.log hold;
            {hold}
        }}
    }}
}}
"""


def answers(url, ctx):
    try:
        with urllib.request.urlopen(url, timeout=1, context=ctx) as r:
            return r.status == 200
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hold-ms", type=int, default=3000,
                    help="how long /hold waits before answering")
    ap.add_argument("--dir", help="keep the config, certificates and logs "
                    "here (default: a temporary directory, removed)")
    a = ap.parse_args()

    d = a.dir or tempfile.mkdtemp(prefix="moor-nginx.")
    os.makedirs(d, exist_ok=True)
    d = os.path.abspath(d)
    proc = None

    class Stop(Exception):
        pass

    def on_signal(*_):
        # Unwinds out of proc.wait() (waiting again inside the handler
        # would deadlock on Popen's wait lock) into the finally below.
        raise Stop()

    def stop():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if proc and proc.poll() is None:
            proc.terminate()  # nginx's master: fast shutdown
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not a.dir:
            shutil.rmtree(d, ignore_errors=True)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        make_certs(d)
        echo = os.path.exists(ECHO_MODULE)
        plain, tls = free_port(), free_port()
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(config(d, plain, tls, a.hold_ms, echo))
        open(os.path.join(d, "hold.log"), "w").close()
        proc = subprocess.Popen([NGINX, "-p", d, "-e", f"{d}/error.log",
                                 "-c", conf], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL,
                                stderr=open(f"{d}/nginx.out", "w"))
        ctx = ssl.create_default_context(cafile=f"{d}/ca.pem")
        for _ in range(100):
            if proc.poll() is not None:
                break
            if (answers(f"http://127.0.0.1:{plain}/healthz", None) and
                    answers(f"https://127.0.0.1:{tls}/healthz", ctx)):
                break
            time.sleep(0.1)
        else:
            proc.poll()
        if proc.returncode is not None or not answers(
                f"http://127.0.0.1:{plain}/healthz", None):
            for name in ("nginx.out", "error.log"):
                try:
                    with open(os.path.join(d, name)) as f:
                        sys.stderr.write(f.read())
                except OSError:
                    pass
            print("nginx_http: nginx did not start", file=sys.stderr)
            return 1
        print(f"nginx listening on http://127.0.0.1:{plain} (pid {proc.pid})")
        print(f"nginx listening on https://127.0.0.1:{tls} (pid {proc.pid})")
        print(f"ca {d}/ca.pem")
        print(f"hold-log {d}/hold.log")
        print(f"hold echo_sleep {a.hold_ms / 1000:.3f} s" if echo else
              "hold limit_rate ~2 s (no echo module: "
              "apt-get install libnginx-mod-http-echo)")
        print("ready", flush=True)
        proc.wait()
        print("nginx_http: nginx exited", file=sys.stderr)
        return 1
    except Stop:
        return 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
