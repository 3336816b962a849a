#!/usr/bin/env bash
# bench/run.sh - moor beside its peers on one core (`make bench` runs it).
# Every server is pinned to core 0 and the load generator to core 1; one
# server runs at a time.
#
#   HTTP/1.1, moor beside nginx:
#   (a) requests/s: wrk against GET /healthz.
#   (b) idle memory: bench/idle_conns.py opens N keep-alive connections,
#       one GET each, holds them idle, and reports the server's VmRSS growth
#       per connection (for nginx: its worker process).
#   WebSocket, moor beside libwebsockets, node ws and gorilla/websocket
#   (bench/peers, built by bench/peers/build.sh), all driven by
#   `moor bench` (moor's own client):
#   (c) idle: `moor bench idle`, 10,000 connections to /echo held 5 s;
#       bytes per connection = growth of the server's VmRSS / connections.
#   (d) echo: `moor bench echo`, 64 connections x 16 messages in flight x
#       32 B for 10 s after 1 s of warm-up: messages/s and p50/p99/p999;
#       run 3 times on a fresh server, the median run (by messages/s) is
#       reported and all three are listed.
#   Broadcast, the same four servers (moor's /sub/bench and /pub/bench, the
#   peers' /sub and /pub), driven by `moor bench broadcast`: 2,000
#   subscribers on one channel, one publisher, 64 B messages:
#   (e) throughput: at most 64 messages published and not yet received by
#       every subscriber, 10 s after 1 s of warm-up: deliveries/s; 3 runs
#       on a fresh server, the median (by deliveries/s) reported;
#   (f) latency: 10 messages/s, 10 s after 1 s: publish-to-receive
#       p50/p99/p999 over every delivery; 3 runs, the median by p99.
#   (g) the window: one throughput run with each of 4, 16, 64 and 256
#       messages in flight, to show how each server responds to it.
#   TLS, the same four servers serving wss:// with a P-256 certificate for
#   127.0.0.1 (made here with the openssl CLI, signed by a CA made here,
#   which the bench trusts with --tls-ca), each with its own TLS stack at
#   its defaults (moor: OpenSSL through src/tls.c; lws: OpenSSL; node: its
#   tls module; gorilla: Go's crypto/tls):
#   (h) idle: `moor bench idle`, 10,000 wss connections to /echo held 5 s:
#       bytes per connection from the server's VmRSS, and for moor the
#       growth of its `tls` tag and of all its tags (/debug/mem) per
#       connection; then moor once more with --mem-trace, and the tls
#       tag's growth by OpenSSL call site (/debug/mem's trace), per
#       connection;
#   (i) handshakes: `moor bench handshake`, 32 connections at a time,
#       each closed as soon as its TLS and WebSocket handshakes are done
#       and replaced by a new one, 10 s after 1 s of warm-up:
#       handshakes/s and the time of each; 3 runs on a fresh server, the
#       median (by handshakes/s) reported.
#   HTTP client (issue 15), moor's pooled HTTP/1.1 client beside Go's
#   net/http Transport, libcurl's multi interface (bench/peers) and wrk,
#   all against one nginx (bench/nginx_http.py, pinned to core 0), the
#   clients on core 1, plain HTTP and HTTPS, runs interleaved
#   (bench/http_report.py):
#   (j) idle pool: N requests at once to /hold (answered after 3 s, so
#       N connections), held idle: growth of the client's own VmRSS / N;
#       median of 3;
#   (k) load: wrk (and moor) with 64 connections on GET / for 10 s:
#       requests/s and the client's CPU seconds; median of 3.
#   moor's rows are pending until `moor bench http` exists; until then
#   --write leaves docs/benchmarks.md's "## Client pool" section alone
#   and the peers' figures are only printed.
#   Auth (issue 16), moor alone, three configurations: no auth, --auth
#   jwt with an HS256 secret, --auth jwt with an ES256 (P-256) key (keys
#   made here with the openssl CLI, tokens granting the channel "bench"
#   made with python3-jwt); runs interleaved (none, hs256, es256, none,
#   ...), each on a fresh server (bench/auth_report.py):
#   (l) handshakes: `moor bench handshake` on /sub/bench?token=TOKEN (no
#       auth: the same URL, its token ignored), 32 connections at a
#       time, 10 s after 1 s of warm-up: handshakes/s and the server's
#       CPU time per handshake (/proc/PID/stat over the measured
#       window); median of 3 per configuration, ratios against no auth;
#   (m) broadcast with auth on: (e) and (f) with the token in both URLs,
#       no auth and HS256 interleaved, 3 runs each. Echo is not run:
#       /echo is not behind --auth.
#
# usage: bench/run.sh [--write] [--only http|ws|broadcast|tls|http-client|auth] [--conns N]
#                     [--duration D] [--ws-conns N] [--echo-duration D]
#                     [--echo-runs N] [--bc-conns N] [--bc-duration D]
#                     [--bc-runs N] [--bc-inflight K] [--bc-rate R]
#                     [--bc-sweep "K..."] [--tls-conns N] [--hs-conns N]
#                     [--hs-duration D] [--hs-runs N] [--hc-conns N]
#                     [--hc-runs N] [--hc-hold D] [--hc-load-conns N]
#                     [--hc-load-duration D] [--auth-conns N]
#                     [--auth-duration D] [--auth-runs N]
#   --write      replace the "## HTTP/1.1", "## WebSocket", "## Broadcast",
#                "## TLS", "## Client pool" and "## Auth" sections of
#                docs/benchmarks.md with what was run (Client pool only
#                once moor's row is measured)
#   --only P     run one part: http, ws, broadcast, tls, http-client or
#                auth (default all)
#   --conns N    idle connections for (b) (default 10000)
#   --duration D wrk duration (default 10s)
#   --ws-conns N idle connections for (c) (default 10000)
#   --echo-duration D  measured time of each echo run (default 10s)
#   --echo-runs N      echo runs per server (default 3)
#   --bc-conns N       broadcast subscribers (default 2000)
#   --bc-duration D    measured time of each broadcast run (default 10s)
#   --bc-runs N        broadcast runs of each kind per server (default 3)
#   --bc-inflight K    the throughput window (default 64)
#   --bc-rate R        the latency runs' messages/s (default 10)
#   --bc-sweep "K..."  windows of (g) (default "4 16 64 256"; "" skips it)
#   --tls-conns N      idle wss connections for (h) (default 10000)
#   --hs-conns N       handshakes in progress at once in (i) (default 32)
#   --hs-duration D    measured time of each handshake run (default 10s)
#   --hs-runs N        handshake runs per server (default 3)
#   --hc-conns N       requests (so connections) of (j) (default 1000)
#   --hc-runs N        runs of (j) and (k) per client and scheme (default 3)
#   --hc-hold D        how long (j) holds the idle pool (default 2s)
#   --hc-load-conns N  connections of (k) (default 64)
#   --hc-load-duration D  length of each (k) run (default 10s)
#   --auth-conns N     handshakes in progress at once in (l) (default 32)
#   --auth-duration D  measured time of each (l) run (default 10s)
#   --auth-runs N      runs of (l) and of (m) per configuration (default
#                      3); (m) takes its subscribers, length, window and
#                      rate from --bc-conns, --bc-duration, --bc-inflight
#                      and --bc-rate
#   A short try of the auth part: --only auth --auth-duration 2s
#   --auth-runs 1 --bc-conns 200 --bc-duration 2s
#
# Never part of the tests: figures depend on the machine. Everything it
# starts is stopped on exit (trap), and every step has a timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

WRITE=0
ONLY=all
CONNS=10000
DURATION=10s
WS_CONNS=10000
ECHO_DURATION=10s
ECHO_RUNS=3
BC_CONNS=2000
BC_DURATION=10s
BC_RUNS=3
BC_INFLIGHT=64
BC_RATE=10
BC_SWEEP="4 16 64 256"
TLS_CONNS=10000
HS_CONNS=32
HS_DURATION=10s
HS_RUNS=3
HC_CONNS=1000
HC_RUNS=3
HC_HOLD=2s
HC_LOAD_CONNS=64
HC_LOAD_DURATION=10s
AUTH_CONNS=32
AUTH_DURATION=10s
AUTH_RUNS=3
while [ $# -gt 0 ]; do
    case $1 in
    --write) WRITE=1 ;;
    --only) ONLY=$2; shift ;;
    --conns) CONNS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --ws-conns) WS_CONNS=$2; shift ;;
    --echo-duration) ECHO_DURATION=$2; shift ;;
    --echo-runs) ECHO_RUNS=$2; shift ;;
    --bc-conns) BC_CONNS=$2; shift ;;
    --bc-duration) BC_DURATION=$2; shift ;;
    --bc-runs) BC_RUNS=$2; shift ;;
    --bc-inflight) BC_INFLIGHT=$2; shift ;;
    --bc-rate) BC_RATE=$2; shift ;;
    --bc-sweep) BC_SWEEP=$2; shift ;;
    --tls-conns) TLS_CONNS=$2; shift ;;
    --hs-conns) HS_CONNS=$2; shift ;;
    --hs-duration) HS_DURATION=$2; shift ;;
    --hs-runs) HS_RUNS=$2; shift ;;
    --hc-conns) HC_CONNS=$2; shift ;;
    --hc-runs) HC_RUNS=$2; shift ;;
    --hc-hold) HC_HOLD=$2; shift ;;
    --hc-load-conns) HC_LOAD_CONNS=$2; shift ;;
    --hc-load-duration) HC_LOAD_DURATION=$2; shift ;;
    --auth-conns) AUTH_CONNS=$2; shift ;;
    --auth-duration) AUTH_DURATION=$2; shift ;;
    --auth-runs) AUTH_RUNS=$2; shift ;;
    -h|--help) sed -n '2,118p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
case $ONLY in
all | http | ws | broadcast | tls | http-client | auth) ;;
*) echo "bench/run.sh: --only takes http, ws, broadcast, tls, http-client or auth" >&2; exit 2 ;;
esac
want() { [ "$ONLY" = all ] || [ "$ONLY" = "$1" ]; }

MOOR=$ROOT/build/release/moor
PY=/usr/bin/python3
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
TOOLS=("$MOOR" taskset "$PY" curl)
want http && TOOLS+=("$NGINX" wrk)
want tls && TOOLS+=(openssl)
want http-client && TOOLS+=("$NGINX" wrk openssl ss)
want auth && TOOLS+=(openssl "$NGINX")
for tool in "${TOOLS[@]}"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "bench/run.sh: $tool not found (make deps release)" >&2
        exit 1
    fi
done

# Pinning: server on core 0, load generator on core 1.
if [ "$(nproc)" -ge 2 ]; then
    PIN_SRV=(taskset -c 0)
    PIN_GEN=(taskset -c 1)
else
    echo "warning: fewer than 2 cores; not pinning" >&2
    PIN_SRV=()
    PIN_GEN=()
fi

ulimit -n "$(ulimit -Hn)"
TMP=$(mktemp -d /tmp/moor-bench.XXXXXX)
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do
        for _ in $(seq 50); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() {   # url [curl args]: until it answers 200, at most 10 s
    local url=$1
    shift
    for _ in $(seq 100); do
        if curl -fsS -o /dev/null --max-time 1 "$@" "$url" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "bench/run.sh: $url never answered" >&2
    return 1
}

stop_pid() {    # pid: SIGTERM, wait up to 10 s, then SIGKILL
    local p=$1
    kill -TERM "$p" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}

# start_server NAME COMMAND... -> sets SRV_PID, SRV_PORT. COMMAND runs
# pinned to the server core and prints a banner with its URL and pid
# ("... http://127.0.0.1:PORT (pid N)"), as moor serve and every peer in
# bench/peers do. With SRV_SCHEME=https the banner's https:// URL is the
# one (a peer serving TLS), and its /healthz is checked over TLS with
# CURL_TLS (the curl flags that trust the certificate).
SRV_SCHEME=http
CURL_TLS=()
start_server() {
    local name=$1 out=$TMP/$1.out
    shift
    : >"$out"
    "${PIN_SRV[@]}" "$@" >"$out" 2>"$TMP/$name.err" &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    SRV_PORT=
    for _ in $(seq 100); do
        SRV_PORT=$(grep -oE "$SRV_SCHEME://127\.0\.0\.1:[0-9]+" "$out" |
            head -n1 | sed 's/.*://') || true
        [ -n "$SRV_PORT" ] && break
        sleep 0.1
    done
    if [ -z "$SRV_PORT" ]; then
        echo "bench/run.sh: $name did not start:" >&2
        cat "$TMP/$name.err" >&2
        exit 1
    fi
    # $! may be a wrapper (taskset, env); the banner names the server's
    # own pid, the one whose memory is read.
    local real
    real=$(grep -oE '\(pid [0-9]+\)' "$out" | head -n1 | tr -dc '0-9') || true
    if [ -n "$real" ] && [ "$real" != "$SRV_PID" ]; then
        SRV_PID=$real
        PIDS+=("$SRV_PID")
    fi
    if [ "$SRV_SCHEME" = https ]; then
        wait_http "https://127.0.0.1:$SRV_PORT/healthz" "${CURL_TLS[@]}"
    else
        wait_http "http://127.0.0.1:$SRV_PORT/healthz"
    fi
}

# Every load below comes from one address (127.0.0.1), so the runs that
# open thousands of connections turn the per-address limits off
# (--max-conns-per-ip 0 --handshake-rate-per-ip 0) along with the accept
# rate: they measure memory and throughput, not admission.
# start_moor ARGS... -> sets SRV_PID, SRV_PORT
start_moor() {
    start_server moor "$MOOR" serve --listen 127.0.0.1:0 "$@"
}

# start_nginx KEEPALIVE_TIMEOUT -> sets SRV_PID (master), SRV_PORT
start_nginx() {
    local conf=$TMP/nginx.conf
    SRV_PORT=$(free_port)
    mkdir -p "$TMP/nginx"
    cat >"$conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log;
worker_rlimit_nofile $(ulimit -Hn);
events {
    worker_connections 20000;
}
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout $1;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    server {
        listen 127.0.0.1:$SRV_PORT;
        location = /healthz {
            default_type text/plain;
            return 200 "ok\n";
        }
    }
}
EOF
    "${PIN_SRV[@]}" "$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$conf" \
        >"$TMP/nginx.out" 2>&1 &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    if ! wait_http "http://127.0.0.1:$SRV_PORT/healthz"; then
        cat "$TMP/nginx.out" "$TMP/nginx/error.log" >&2 || true
        exit 1
    fi
    # The master's own pid (its worker is the process measured in (b)).
    local real
    real=$(cat "$TMP/nginx/nginx.pid" 2>/dev/null) || true
    if [ -n "$real" ] && [ "$real" != "$SRV_PID" ]; then
        SRV_PID=$real
        PIDS+=("$SRV_PID")
    fi
}

# wrk_rps URL -> prints requests/s
wrk_rps() {
    local out=$TMP/wrk.out
    # A short warm-up, then the measured run.
    timeout 30 "${PIN_GEN[@]}" wrk -t1 -c64 -d2s "$1" >/dev/null 2>&1 || true
    timeout 120 "${PIN_GEN[@]}" wrk -t1 -c64 -d"$DURATION" "$1" >"$out" 2>&1
    sed -e 's/^/    /' "$out" >&2
    awk '/^Requests\/sec:/ {print $2}' "$out"
}

# idle_bytes ARGS... -> prints bytes per connection; moor's accounted
# bytes per connection (if --metrics-url) go to $TMP/accounted
idle_bytes() {
    local out=$TMP/idle.out line
    timeout 300 "$PY" "$ROOT/bench/idle_conns.py" --conns "$CONNS" "$@" \
        >"$out" 2>&1 || { cat "$out" >&2; exit 1; }
    sed -e 's/^/    /' "$out" >&2
    line=$(grep '^RESULT' "$out" | tail -n1)
    { printf '%s\n' "$line" | grep -oE 'accounted_per_conn=[0-9-]+' |
        cut -d= -f2 || true; } >"$TMP/accounted"
    printf '%s\n' "$line" | grep -oE 'bytes_per_conn=[0-9-]+' | cut -d= -f2
}

REPORT=$TMP/report.md
: >"$REPORT"
DATE=$(date -u +%Y-%m-%d)
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
MOOR_VER=$("$MOOR" --version)

http_part() {
    WRK_CMD="${PIN_GEN[*]:+${PIN_GEN[*]} }wrk -t1 -c64 -d$DURATION http://127.0.0.1:PORT/healthz"
    MOOR_RPS_CMD="${PIN_SRV[*]:+${PIN_SRV[*]} }build/release/moor serve --listen 127.0.0.1:0"
    MOOR_IDLE_CMD="${PIN_SRV[*]:+${PIN_SRV[*]} }build/release/moor serve --listen 127.0.0.1:0 --accept-rate 0 --max-conns-per-ip 0 --handshake-rate-per-ip 0 --max-conns $((CONNS + 1000)) --idle-timeout 600s"
    NGINX_CMD="${PIN_SRV[*]:+${PIN_SRV[*]} }nginx -c nginx.conf  # worker_processes 1, access_log off, keepalive_requests 1000000"
    IDLE_CMD="bench/idle_conns.py --port PORT --pid PID --conns $CONNS  # nginx: --child"

    echo "== (a) requests/s: moor" >&2
    start_moor
    MOOR_RPS=$(wrk_rps "http://127.0.0.1:$SRV_PORT/healthz")
    stop_pid "$SRV_PID"

    echo "== (a) requests/s: nginx" >&2
    start_nginx 75s
    NGINX_RPS=$(wrk_rps "http://127.0.0.1:$SRV_PORT/healthz")
    stop_pid "$SRV_PID"

    echo "== (b) idle memory: moor, $CONNS connections" >&2
    start_moor --accept-rate 0 --max-conns-per-ip 0 --handshake-rate-per-ip 0 --max-conns $((CONNS + 1000)) --idle-timeout 600s
    MOOR_IDLE=$(idle_bytes --port "$SRV_PORT" --pid "$SRV_PID" \
        --metrics-url "http://127.0.0.1:$SRV_PORT/metrics")
    MOOR_ACC=$(cat "$TMP/accounted")
    stop_pid "$SRV_PID"

    echo "== (b) idle memory: nginx, $CONNS connections" >&2
    start_nginx 600s
    NGINX_IDLE=$(idle_bytes --port "$SRV_PORT" --pid "$SRV_PID" --child)
    stop_pid "$SRV_PID"

    RATIO=$(awk -v a="$MOOR_RPS" -v b="$NGINX_RPS" \
        'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
    NGINX_VER=$("$NGINX" -v 2>&1 | sed 's/.*: //')

    {
        echo "## HTTP/1.1"
        echo
        echo "Measured $DATE on $CPU ($(nproc) cores), $MOOR_VER vs $NGINX_VER."
        echo "Server pinned to core 0, wrk to core 1; one server at a time."
        echo
        echo "| server | req/s | ratio | idle bytes/conn |"
        echo "|---|---:|---:|---:|"
        printf '| moor | %.0f | %s | %s |\n' "$MOOR_RPS" "$RATIO" "$MOOR_IDLE"
        printf '| nginx | %.0f | 1.00 | %s |\n' "$NGINX_RPS" "$NGINX_IDLE"
        echo
        echo "req/s: GET /healthz, keep-alive, 64 connections. idle bytes/conn:"
        echo "growth of the server's VmRSS (nginx: its worker) after $CONNS"
        echo "keep-alive connections made one request each and went idle, divided"
        echo "by $CONNS."
        if [ -n "$MOOR_ACC" ]; then
            echo "moor's own accounting (sum of moor_mem_live_bytes) for the same:"
            echo "$MOOR_ACC bytes/conn."
        fi
        echo
        echo "Commands (\`make bench\` runs \`bench/run.sh\`):"
        echo
        echo '```sh'
        echo "$MOOR_RPS_CMD"
        echo "$NGINX_CMD"
        echo "$WRK_CMD"
        echo "$MOOR_IDLE_CMD"
        echo "$IDLE_CMD"
        echo '```'
        echo
    } >>"$REPORT"
}

# ---- WebSocket --------------------------------------------------------------

# The peers, in the order they are run and shown; libwebsockets is the
# base of the ratios.
WS_SERVERS=(moor lws node gorilla)

# start_ws NAME DIR [MOOR_ARGS...] -> sets SRV_PID, SRV_PORT; records the
# command in DIR/NAME.cmd. MOOR_ARGS are moor's flags (the peers take
# none).
start_ws() {
    local cmd env='' name=$1 dir=$2
    shift 2
    case $name in
    moor)
        start_moor "$@"
        cmd="build/release/moor serve --listen 127.0.0.1:0 $*"
        ;;
    lws)
        start_server lws "$ROOT/build/peers/lws-echo" --port 0
        cmd="build/peers/lws-echo --port 0"
        ;;
    node)
        start_server node node "$ROOT/bench/peers/node/server.js" --port 0
        cmd="node bench/peers/node/server.js --port 0"
        ;;
    gorilla)
        start_server gorilla env GOMAXPROCS=1 "$ROOT/build/peers/gorilla-echo" \
            -addr 127.0.0.1:0
        env="GOMAXPROCS=1 "
        cmd="build/peers/gorilla-echo -addr 127.0.0.1:0"
        ;;
    esac
    printf '%s\n' "$env${PIN_SRV[*]:+${PIN_SRV[*]} }$cmd" >"$dir/$name.cmd"
}

# moor_bench OUT.json ARGS... : one `moor bench` run on the generator core,
# JSON to OUT.json, the human-readable progress to stderr. A run that
# fails (exit 1: connections failed) still has its figures; anything else
# stops the benchmark.
moor_bench() {
    local out=$1 rc=0
    shift
    timeout 600 "${PIN_GEN[@]}" "$MOOR" bench "$@" --json >"$out" \
        2>"$TMP/bench.err" || rc=$?
    sed -e 's/^/    /' "$TMP/bench.err" >&2
    if [ "$rc" != 0 ] && { [ "$rc" != 1 ] || [ ! -s "$out" ]; }; then
        echo "bench/run.sh: moor bench $* exited $rc" >&2
        exit 1
    fi
    "$PY" -c 'import json, sys; d = json.load(open(sys.argv[1]))
if d["mode"] == "idle":
    print("    %d of %d open, %s bytes/conn (VmRSS), %s Pss, %s Private"
          % (d["open"], d["conns"], d["bytes_per_conn"], d["pss_per_conn"],
             d["private_per_conn"]))
elif d["mode"] == "handshake":
    l = d["latency_us"]
    print("    %.0f handshakes/s, p50 %.0f us, p99 %.0f us, failed %d, "
          "bench cpu %.0f%%, server cpu %s%%" % (d["handshakes_per_s"],
          l["p50"], l["p99"], d["failed"], d["bench_cpu_pct"],
          d["server_cpu_pct"]))
elif d["mode"] == "broadcast":
    l = d["latency_us"]
    print("    %.0f deliveries/s (%.0f published/s), p50 %.0f us, p99 %.0f "
          "us, p999 %.0f us, lost %d, duplicated %d, out of order %d, "
          "bench cpu %.0f%%, server cpu %s%%" % (d["deliveries_per_s"],
          d["published_per_s"], l["p50"], l["p99"], l["p999"], d["lost"],
          d["duplicated"], d["out_of_order"], d["bench_cpu_pct"],
          d["server_cpu_pct"]))
else:
    l = d["latency_us"]
    print("    %.0f msgs/s, p50 %.0f us, p99 %.0f us, p999 %.0f us, "
          "bench cpu %.0f%%, server cpu %s%%" % (d["msgs_per_s"], l["p50"],
          l["p99"], l["p999"], d["bench_cpu_pct"], d["server_cpu_pct"]))
if d["error"]:
    print("    error: " + d["error"])' "$out" >&2
}

# moor's flags for the WebSocket part: connections accepted as fast as
# they come, and room for all of them.
MOOR_WS_ARGS=(--accept-rate 0 --max-conns-per-ip 0 --handshake-rate-per-ip 0 --max-conns $((WS_CONNS + 1000)))

ws_part() {
    mkdir -p "$TMP/ws"
    echo "== WebSocket peers: bench/peers/build.sh" >&2
    "$ROOT/bench/peers/build.sh" >&2
    local name i
    for name in "${WS_SERVERS[@]}"; do
        echo "== (c) idle WebSocket memory: $name, $WS_CONNS connections" >&2
        start_ws "$name" "$TMP/ws" "${MOOR_WS_ARGS[@]}"
        moor_bench "$TMP/ws/$name.idle.json" idle \
            --url "ws://127.0.0.1:$SRV_PORT/echo" --conns "$WS_CONNS" \
            --pid "$SRV_PID"
        stop_pid "$SRV_PID"
        for i in $(seq "$ECHO_RUNS"); do
            echo "== (d) echo: $name, run $i of $ECHO_RUNS" >&2
            start_ws "$name" "$TMP/ws" "${MOOR_WS_ARGS[@]}"
            moor_bench "$TMP/ws/$name.echo$i.json" echo \
                --url "ws://127.0.0.1:$SRV_PORT/echo" --conns 64 \
                --inflight 16 --size 32B --duration "$ECHO_DURATION" \
                --warmup 1s --pid "$SRV_PID"
            stop_pid "$SRV_PID"
        done
    done
    local gen="${PIN_GEN[*]:+${PIN_GEN[*]} }"
    {
        echo "bench/peers/build.sh"
        for name in "${WS_SERVERS[@]}"; do
            cat "$TMP/ws/$name.cmd"
        done
        echo "${gen}build/release/moor bench idle --url ws://127.0.0.1:PORT/echo --conns $WS_CONNS --pid PID"
        echo "${gen}build/release/moor bench echo --url ws://127.0.0.1:PORT/echo --conns 64 --inflight 16 --size 32B --duration $ECHO_DURATION --warmup 1s --pid PID  # x $ECHO_RUNS"
    } >"$TMP/ws/commands"
    "$PY" "$ROOT/bench/ws_report.py" --dir "$TMP/ws" --servers "${WS_SERVERS[*]}" \
        --versions "$(peer_versions)" --date "$DATE" \
        --cpu "$CPU ($(nproc) cores)" \
        --conns "$WS_CONNS" --runs "$ECHO_RUNS" >>"$REPORT"
}

# The versions of moor and the peers, |-separated in WS_SERVERS order.
peer_versions() {
    local v
    v="$MOOR_VER"
    v+="|libwebsockets $(pkg-config --modversion libwebsockets 2>/dev/null | sed 's/-$//' || echo '?')"
    v+="|node $(node --version 2>/dev/null | tr -d v) + ws $("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$ROOT/bench/peers/node/node_modules/ws/package.json" 2>/dev/null || echo '?')"
    v+="|Go $(go version 2>/dev/null | awk '{print $3}' | sed 's/^go//') + gorilla/websocket $(dpkg-query -W -f '${Version}' golang-github-gorilla-websocket-dev 2>/dev/null | sed 's/-.*//' || echo '?')"
    printf '%s\n' "$v"
}

# ---- Broadcast --------------------------------------------------------------

# moor's flags for the broadcast part: the subscribers accepted as fast as
# they come, room for all of them, and no publish rate limit (--rate 0:
# the default, 10,000 messages/s per publisher, is above what any run
# here publishes, but the figures must not depend on that). The queue
# limits stay at their defaults (1 MiB hard, 256 KiB soft): the bench's
# window keeps every queue far below them.
MOOR_BC_ARGS=(--accept-rate 0 --max-conns-per-ip 0 --handshake-rate-per-ip 0 --max-conns $((BC_CONNS + 1000)) --rate 0)

# bc_urls NAME -> the subscriber and publisher URLs of a server on
# SRV_PORT: moor's channel "bench", the peers' one broadcast.
bc_urls() {
    if [ "$1" = moor ]; then
        BC_SUB="ws://127.0.0.1:$SRV_PORT/sub/bench"
        BC_PUB="ws://127.0.0.1:$SRV_PORT/pub/bench"
    else
        BC_SUB="ws://127.0.0.1:$SRV_PORT/sub"
        BC_PUB="ws://127.0.0.1:$SRV_PORT/pub"
    fi
}

bcast_part() {
    local dir=$TMP/bc name i k
    mkdir -p "$dir"
    echo "== WebSocket peers: bench/peers/build.sh" >&2
    "$ROOT/bench/peers/build.sh" >&2
    for name in "${WS_SERVERS[@]}"; do
        for i in $(seq "$BC_RUNS"); do
            echo "== (e) broadcast throughput: $name, $BC_CONNS subscribers, run $i of $BC_RUNS" >&2
            start_ws "$name" "$dir" "${MOOR_BC_ARGS[@]}"
            bc_urls "$name"
            moor_bench "$dir/$name.tput$i.json" broadcast \
                --sub-url "$BC_SUB" --pub-url "$BC_PUB" --conns "$BC_CONNS" \
                --size 64B --inflight "$BC_INFLIGHT" \
                --duration "$BC_DURATION" --warmup 1s --pid "$SRV_PID"
            stop_pid "$SRV_PID"
        done
        for i in $(seq "$BC_RUNS"); do
            echo "== (f) broadcast latency: $name, $BC_RATE messages/s, run $i of $BC_RUNS" >&2
            start_ws "$name" "$dir" "${MOOR_BC_ARGS[@]}"
            bc_urls "$name"
            moor_bench "$dir/$name.lat$i.json" broadcast \
                --sub-url "$BC_SUB" --pub-url "$BC_PUB" --conns "$BC_CONNS" \
                --size 64B --rate "$BC_RATE" \
                --duration "$BC_DURATION" --warmup 1s --pid "$SRV_PID"
            stop_pid "$SRV_PID"
        done
        for k in $BC_SWEEP; do
            echo "== (g) broadcast window: $name, $k messages in flight" >&2
            start_ws "$name" "$dir" "${MOOR_BC_ARGS[@]}"
            bc_urls "$name"
            moor_bench "$dir/$name.win-$k.json" broadcast \
                --sub-url "$BC_SUB" --pub-url "$BC_PUB" --conns "$BC_CONNS" \
                --size 64B --inflight "$k" \
                --duration "$BC_DURATION" --warmup 1s --pid "$SRV_PID"
            stop_pid "$SRV_PID"
        done
    done
    local gen="${PIN_GEN[*]:+${PIN_GEN[*]} }"
    {
        echo "bench/peers/build.sh"
        for name in "${WS_SERVERS[@]}"; do
            cat "$dir/$name.cmd"
        done
        echo "${gen}build/release/moor bench broadcast --sub-url ws://127.0.0.1:PORT/sub/bench --pub-url ws://127.0.0.1:PORT/pub/bench --conns $BC_CONNS --size 64B --inflight $BC_INFLIGHT --duration $BC_DURATION --warmup 1s --pid PID  # x $BC_RUNS; peers: --sub-url .../sub --pub-url .../pub"
        echo "${gen}build/release/moor bench broadcast --sub-url ws://127.0.0.1:PORT/sub/bench --pub-url ws://127.0.0.1:PORT/pub/bench --conns $BC_CONNS --size 64B --rate $BC_RATE --duration $BC_DURATION --warmup 1s --pid PID  # x $BC_RUNS"
        [ -z "$BC_SWEEP" ] || echo "${gen}build/release/moor bench broadcast ... --inflight K  # K = ${BC_SWEEP// /, }, once each"
    } >"$dir/commands"
    "$PY" "$ROOT/bench/broadcast_report.py" --dir "$dir" \
        --servers "${WS_SERVERS[*]}" --versions "$(peer_versions)" \
        --date "$DATE" --cpu "$CPU ($(nproc) cores)" \
        --moor-flags "${MOOR_BC_ARGS[*]}" --runs "$BC_RUNS" \
        --sweep "$BC_SWEEP" >>"$REPORT"
}

# ---- TLS --------------------------------------------------------------------

# make_certs DIR: a P-256 CA and a server certificate for IP 127.0.0.1
# signed by it (DIR/ca.pem, DIR/cert.pem, DIR/key.pem), valid two days.
make_certs() {
    local d=$1
    mkdir -p "$d"
    printf '%s\n' "subjectAltName=IP:127.0.0.1" \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" >"$d/ext.cnf"
    {
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
            -nodes -keyout "$d/ca.key" -out "$d/ca.pem" -days 2 \
            -subj "/CN=moor bench CA" &&
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
                -nodes -keyout "$d/key.pem" -out "$d/cert.csr" \
                -subj "/CN=127.0.0.1" &&
            openssl x509 -req -in "$d/cert.csr" -CA "$d/ca.pem" \
                -CAkey "$d/ca.key" -CAcreateserial -days 2 \
                -extfile "$d/ext.cnf" -out "$d/cert.pem" &&
            openssl verify -CAfile "$d/ca.pem" "$d/cert.pem"
    } >"$d/openssl.log" 2>&1 || {
        cat "$d/openssl.log" >&2
        echo "bench/run.sh: could not make the test certificates" >&2
        exit 1
    }
}

# moor's flags for the TLS part: connections accepted as fast as they
# come, room for all of them; certificates and the rest at their defaults
# (no session tickets or cache, handshake timeout 10 s).
MOOR_TLS_ARGS=(--accept-rate 0 --max-conns-per-ip 0 --handshake-rate-per-ip 0 --max-conns $((TLS_CONNS + 1000)))

# start_tls NAME DIR -> sets SRV_PID, TLS_PORT (the wss:// port) and, for
# moor, SRV_PORT (its plain port: /metrics, /debug/mem); records the
# command in DIR/NAME.cmd. MOOR_ARGS (moor only) go after moor's TLS flags.
start_tls() {
    local cmd env='' name=$1 dir=$2 c=$TLS_DIR/cert.pem k=$TLS_DIR/key.pem
    shift 2
    SRV_SCHEME=https
    case $name in
    moor)
        SRV_SCHEME=http
        start_moor "${MOOR_TLS_ARGS[@]}" --tls-listen 127.0.0.1:0 \
            --tls-cert "$c" --tls-key "$k" "$@"
        TLS_PORT=$(grep -oE 'https://127\.0\.0\.1:[0-9]+' "$TMP/moor.out" |
            head -n1 | sed 's/.*://') || true
        if [ -z "$TLS_PORT" ]; then
            echo "bench/run.sh: moor printed no https:// listener:" >&2
            cat "$TMP/moor.out" >&2
            exit 1
        fi
        wait_http "https://127.0.0.1:$TLS_PORT/healthz" "${CURL_TLS[@]}"
        cmd="build/release/moor serve --listen 127.0.0.1:0 ${MOOR_TLS_ARGS[*]} --tls-listen 127.0.0.1:0 --tls-cert cert.pem --tls-key key.pem${*:+ $*}"
        ;;
    lws)
        start_server lws "$ROOT/build/peers/lws-echo" --port 0 \
            --tls-cert "$c" --tls-key "$k"
        cmd="build/peers/lws-echo --port 0 --tls-cert cert.pem --tls-key key.pem"
        ;;
    node)
        start_server node node "$ROOT/bench/peers/node/server.js" --port 0 \
            --tls-cert "$c" --tls-key "$k"
        cmd="node bench/peers/node/server.js --port 0 --tls-cert cert.pem --tls-key key.pem"
        ;;
    gorilla)
        start_server gorilla env GOMAXPROCS=1 "$ROOT/build/peers/gorilla-echo" \
            -addr 127.0.0.1:0 -tls-cert "$c" -tls-key "$k"
        env="GOMAXPROCS=1 "
        cmd="build/peers/gorilla-echo -addr 127.0.0.1:0 -tls-cert cert.pem -tls-key key.pem"
        ;;
    esac
    [ "$name" = moor ] || TLS_PORT=$SRV_PORT
    SRV_SCHEME=http
    printf '%s\n' "$env${PIN_SRV[*]:+${PIN_SRV[*]} }$cmd" >"$dir/$name.cmd"
}

# tls_warm: a second of handshakes (4 at a time) against the server on
# TLS_PORT before any baseline, so that what a server sets up on its
# first TLS connections (OpenSSL's algorithm caches, a runtime's lazily
# built tables) is not counted per connection.
tls_warm() {
    timeout 60 "${PIN_GEN[@]}" "$MOOR" bench handshake \
        --url "wss://127.0.0.1:$TLS_PORT/echo" --tls-ca "$TLS_DIR/ca.pem" \
        --conns 4 --duration 1s --warmup 0 >/dev/null 2>"$TMP/warm.err" || {
        cat "$TMP/warm.err" >&2
        echo "bench/run.sh: TLS warm-up against $TLS_PORT failed" >&2
        exit 1
    }
}

# metric NAME: the value of an unlabelled metric of moor on SRV_PORT (0
# if there is none yet)
metric() {
    curl -fsS --max-time 5 "http://127.0.0.1:$SRV_PORT/metrics" |
        awk -v m="$1" '$1 == m { v = $2 } END { print v + 0 }'
}

# tls_idle_moor OUT PREFIX: `moor bench idle` over wss:// into OUT.json
# as for every server; besides, moor's /debug/mem before it (after the
# warm-up) into PREFIX.before.json, and once all TLS_CONNS are open
# into PREFIX.open.json, with the TLS connections open then in
# PREFIX.conns.
tls_idle_moor() {
    local out=$1 pre=$2 bpid n=0
    curl -fsS "http://127.0.0.1:$SRV_PORT/debug/mem" >"$pre.before.json"
    moor_bench "$out" idle --url "wss://127.0.0.1:$TLS_PORT/echo" \
        --tls-ca "$TLS_DIR/ca.pem" --conns "$TLS_CONNS" --pid "$SRV_PID" &
    bpid=$!
    # Until every connection is open (or the bench is gone): 120 s at most.
    for _ in $(seq 600); do
        n=$(metric moor_tls_connections) || n=0
        [ "$n" -ge "$TLS_CONNS" ] && break
        kill -0 "$bpid" 2>/dev/null || break
        sleep 0.2
    done
    # Handshakes still finishing settle; the bench holds them 5 s.
    sleep 1
    n=$(metric moor_tls_connections) || n=0
    curl -fsS "http://127.0.0.1:$SRV_PORT/debug/mem" >"$pre.open.json"
    echo "$n" >"$pre.conns"
    echo "    moor: /debug/mem read with $n TLS connections open" >&2
    wait "$bpid" || exit 1
}

tls_part() {
    local dir=$TMP/tls name i
    mkdir -p "$dir"
    TLS_DIR=$dir/certs
    make_certs "$TLS_DIR"
    CURL_TLS=(--cacert "$TLS_DIR/ca.pem")
    echo "== WebSocket peers: bench/peers/build.sh" >&2
    "$ROOT/bench/peers/build.sh" >&2
    for name in "${WS_SERVERS[@]}"; do
        echo "== (h) idle TLS memory: $name, $TLS_CONNS wss connections" >&2
        start_tls "$name" "$dir"
        tls_warm
        if [ "$name" = moor ]; then
            tls_idle_moor "$dir/moor.idle.json" "$dir/moor.mem"
        else
            moor_bench "$dir/$name.idle.json" idle \
                --url "wss://127.0.0.1:$TLS_PORT/echo" \
                --tls-ca "$TLS_DIR/ca.pem" --conns "$TLS_CONNS" \
                --pid "$SRV_PID"
        fi
        stop_pid "$SRV_PID"
        if [ "$name" = moor ]; then
            echo "== (h) moor --mem-trace: the tls tag by call site" >&2
            start_tls moor "$dir" --mem-trace
            mv "$dir/moor.cmd" "$dir/moor-trace.cmd"
            tls_warm
            tls_idle_moor "$dir/moor-trace.idle.json" "$dir/moor.trace"
            stop_pid "$SRV_PID"
        fi
        for i in $(seq "$HS_RUNS"); do
            echo "== (i) handshakes: $name, run $i of $HS_RUNS" >&2
            start_tls "$name" "$dir"
            moor_bench "$dir/$name.hs$i.json" handshake \
                --url "wss://127.0.0.1:$TLS_PORT/echo" \
                --tls-ca "$TLS_DIR/ca.pem" --conns "$HS_CONNS" \
                --duration "$HS_DURATION" --warmup 1s --pid "$SRV_PID"
            stop_pid "$SRV_PID"
        done
    done
    local gen="${PIN_GEN[*]:+${PIN_GEN[*]} }"
    {
        echo "bench/peers/build.sh"
        echo "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 ...  # CA, then a certificate for IP:127.0.0.1 signed by it (bench/run.sh make_certs)"
        for name in "${WS_SERVERS[@]}"; do
            cat "$dir/$name.cmd"
        done
        cat "$dir/moor-trace.cmd"
        echo "${gen}build/release/moor bench handshake --url wss://127.0.0.1:PORT/echo --tls-ca ca.pem --conns 4 --duration 1s --warmup 0  # warm-up, before each idle run"
        echo "${gen}build/release/moor bench idle --url wss://127.0.0.1:PORT/echo --tls-ca ca.pem --conns $TLS_CONNS --pid PID"
        echo "curl http://127.0.0.1:PORT/debug/mem  # moor: before, and once the $TLS_CONNS are open"
        echo "${gen}build/release/moor bench handshake --url wss://127.0.0.1:PORT/echo --tls-ca ca.pem --conns $HS_CONNS --duration $HS_DURATION --warmup 1s --pid PID  # x $HS_RUNS"
    } >"$dir/commands"
    "$PY" "$ROOT/bench/tls_report.py" --dir "$dir" \
        --servers "${WS_SERVERS[*]}" --versions "$(peer_versions)" \
        --date "$DATE" --cpu "$CPU ($(nproc) cores)" \
        --conns "$TLS_CONNS" --runs "$HS_RUNS" \
        --openssl "$(openssl version | awk '{print $2}')" >>"$REPORT"
}

# ---- HTTP client -------------------------------------------------------------

# (j) and (k): bench/http_report.py runs them (it starts bench/nginx_http.py
# and pins it and the clients itself) and writes the section. It goes
# into the report (and so, with --write, into docs/benchmarks.md) only
# once moor's row is measured; until then it is printed on its own.
http_client_part() {
    local dir=$TMP/hc
    mkdir -p "$dir"
    echo "== HTTP client peers: bench/peers/build.sh" >&2
    "$ROOT/bench/peers/build.sh" >&2
    timeout 3600 "$PY" "$ROOT/bench/http_report.py" --dir "$dir" \
        --date "$DATE" --cpu "$CPU ($(nproc) cores)" --moor "$MOOR" \
        --conns "$HC_CONNS" --runs "$HC_RUNS" --hold "$HC_HOLD" \
        --load-conns "$HC_LOAD_CONNS" --load-duration "$HC_LOAD_DURATION" \
        >"$dir/section.md" || {
        echo "bench/run.sh: bench/http_report.py failed" >&2
        exit 1
    }
    if [ "$(cat "$dir/moor_row" 2>/dev/null)" = measured ]; then
        cat "$dir/section.md" >>"$REPORT"
    else
        echo "== HTTP client: moor's row is pending (no \`moor bench http\` yet):" \
            "the section is printed, not written" >&2
        HC_PENDING=$dir/section.md
    fi
}

# ---- Auth -------------------------------------------------------------------

# The server configurations of (l), in the order each round runs them
# and the report shows them; "none" is the base of the ratios. (m) runs
# the first two.
AUTH_MODES=(none hs256 es256 callback)
AUTH_BC_MODES=(none hs256)

# moor's flags for (l): connections accepted as fast as they come (the
# default accept rate, 2,000 a second, and the per-address handshake
# rate, 100 a second, would cap the handshake rate; see start_moor).
# (m) runs with the broadcast part's MOOR_BC_ARGS.
MOOR_AUTH_ARGS=(--accept-rate 0 --max-conns-per-ip 0 --handshake-rate-per-ip 0)

# make_auth_keys DIR: an HMAC secret of 64 hex characters (DIR/secret),
# a P-256 key pair (DIR/es.key, its public half DIR/es.pem), and the
# tokens DIR/hs256.tok and DIR/es256.tok, made by python3-jwt: subject
# "bench", subscribe and publish on "bench", valid a day.
make_auth_keys() {
    local d=$1
    mkdir -p "$d"
    {
        openssl rand -hex 32 >"$d/secret" &&
            openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
                -out "$d/es.key" &&
            openssl pkey -in "$d/es.key" -pubout -out "$d/es.pem" &&
            "$PY" -c 'import jwt, sys, time
d = sys.argv[1]
claims = {"sub": "bench", "exp": int(time.time()) + 86400,
          "channels": ["bench"], "publish": ["bench"]}
with open(d + "/secret", "rb") as f:
    secret = f.read().strip()
with open(d + "/es.key") as f:
    es = f.read()
with open(d + "/hs256.tok", "w") as f:
    f.write(jwt.encode(claims, secret, algorithm="HS256"))
with open(d + "/es256.tok", "w") as f:
    f.write(jwt.encode(claims, es, algorithm="ES256"))' "$d"
    } >"$d/keys.log" 2>&1 || {
        cat "$d/keys.log" >&2
        echo "bench/run.sh: could not make the keys and tokens (is" \
            "python3-jwt installed?)" >&2
        exit 1
    }
}

# start_auth MODE DIR NAME [MOOR_ARGS...] -> sets SRV_PID, SRV_PORT and
# AUTH_TOKEN (the token the bench sends: HS256's for none too, so every
# configuration is sent the same bytes but ES256's); records the command
# in DIR/NAME.cmd. MOOR_ARGS go before the auth flags.
start_auth() {
    local mode=$1 dir=$2 name=$3 auth=() shown=''
    shift 3
    case $mode in
    hs256)
        auth=(--auth jwt --jwt-secret-file "$AUTH_DIR/secret")
        shown=' --auth jwt --jwt-secret-file secret'
        ;;
    es256)
        auth=(--auth jwt --jwt-key-file "$AUTH_DIR/es.pem")
        shown=' --auth jwt --jwt-key-file es.pem'
        ;;
    callback)
        auth=(--auth url --auth-url "http://127.0.0.1:$AUTH_NGINX_PORT/allow")
        shown=' --auth url --auth-url http://127.0.0.1:NGINX/allow'
        ;;
    esac
    start_moor "$@" "${auth[@]+"${auth[@]}"}"
    if [ "$mode" = es256 ]; then
        AUTH_TOKEN=$(cat "$AUTH_DIR/es256.tok")
    else
        AUTH_TOKEN=$(cat "$AUTH_DIR/hs256.tok")
    fi
    printf '%s\n' "${PIN_SRV[*]:+${PIN_SRV[*]} }build/release/moor serve --listen 127.0.0.1:0 $*$shown" \
        >"$dir/$name.cmd"
}

# auth_counts OUT: moor's token checks so far (moor_auth_total, allowed
# and denied) into OUT as {"allowed": A, "denied": D}
auth_counts() {
    curl -fsS --max-time 5 "http://127.0.0.1:$SRV_PORT/metrics" | awk '
        /^moor_auth_total\{result="allowed"/ { a += $2 }
        /^moor_auth_total\{result="denied"/ { d += $2 }
        END { printf "{\"allowed\": %d, \"denied\": %d}\n", a, d }' >"$1"
}

auth_part() {
    local dir=$TMP/auth mode i sub pub
    mkdir -p "$dir"
    AUTH_DIR=$dir/keys
    make_auth_keys "$AUTH_DIR"
    # The callback's service: nginx answering 204 at /allow, one worker
    # pinned with the load generator (its CPU is not moor's).
    "${PIN_GEN[@]}" "$PY" "$ROOT/bench/nginx_http.py" --dir "$dir/nginx" \
        >"$dir/nginx.out" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        grep -q '^ready' "$dir/nginx.out" 2>/dev/null && break
        sleep 0.1
    done
    AUTH_NGINX_PORT=$(sed -n 's#^nginx listening on http://127.0.0.1:\([0-9]*\).*#\1#p' "$dir/nginx.out")
    [ -n "$AUTH_NGINX_PORT" ] || {
        cat "$dir/nginx.out" >&2
        echo "bench/run.sh: nginx (the callback's service) did not start" >&2
        exit 1
    }
    for i in $(seq "$AUTH_RUNS"); do
        for mode in "${AUTH_MODES[@]}"; do
            echo "== (l) handshakes: $mode, run $i of $AUTH_RUNS" >&2
            start_auth "$mode" "$dir" "$mode" "${MOOR_AUTH_ARGS[@]}"
            moor_bench "$dir/$mode.hs$i.json" handshake \
                --url "ws://127.0.0.1:$SRV_PORT/sub/bench?token=$AUTH_TOKEN" \
                --conns "$AUTH_CONNS" --duration "$AUTH_DURATION" \
                --warmup 1s --pid "$SRV_PID"
            auth_counts "$dir/$mode.hs$i.auth"
            stop_pid "$SRV_PID"
        done
    done
    for i in $(seq "$AUTH_RUNS"); do
        for mode in "${AUTH_BC_MODES[@]}"; do
            echo "== (m) broadcast throughput: $mode, $BC_CONNS subscribers, run $i of $AUTH_RUNS" >&2
            start_auth "$mode" "$dir" "$mode.bc" "${MOOR_BC_ARGS[@]}"
            sub="ws://127.0.0.1:$SRV_PORT/sub/bench?token=$AUTH_TOKEN"
            pub="ws://127.0.0.1:$SRV_PORT/pub/bench?token=$AUTH_TOKEN"
            moor_bench "$dir/$mode.tput$i.json" broadcast \
                --sub-url "$sub" --pub-url "$pub" --conns "$BC_CONNS" \
                --size 64B --inflight "$BC_INFLIGHT" \
                --duration "$BC_DURATION" --warmup 1s --pid "$SRV_PID"
            auth_counts "$dir/$mode.tput$i.auth"
            stop_pid "$SRV_PID"
            echo "== (m) broadcast latency: $mode, $BC_RATE messages/s, run $i of $AUTH_RUNS" >&2
            start_auth "$mode" "$dir" "$mode.bc" "${MOOR_BC_ARGS[@]}"
            sub="ws://127.0.0.1:$SRV_PORT/sub/bench?token=$AUTH_TOKEN"
            pub="ws://127.0.0.1:$SRV_PORT/pub/bench?token=$AUTH_TOKEN"
            moor_bench "$dir/$mode.lat$i.json" broadcast \
                --sub-url "$sub" --pub-url "$pub" --conns "$BC_CONNS" \
                --size 64B --rate "$BC_RATE" \
                --duration "$BC_DURATION" --warmup 1s --pid "$SRV_PID"
            auth_counts "$dir/$mode.lat$i.auth"
            stop_pid "$SRV_PID"
        done
    done
    local gen="${PIN_GEN[*]:+${PIN_GEN[*]} }"
    {
        echo "openssl rand -hex 32 >secret"
        echo "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out es.key && openssl pkey -in es.key -pubout -out es.pem"
        echo "python3 -c 'import jwt; ...'  # {\"sub\": \"bench\", \"exp\": now + 1 day, \"channels\": [\"bench\"], \"publish\": [\"bench\"]}, HS256 with secret, ES256 with es.key (bench/run.sh make_auth_keys)"
        for mode in "${AUTH_MODES[@]}"; do
            cat "$dir/$mode.cmd"
        done
        echo "${gen}build/release/moor bench handshake --url 'ws://127.0.0.1:PORT/sub/bench?token=TOKEN' --conns $AUTH_CONNS --duration $AUTH_DURATION --warmup 1s --pid PID  # x $AUTH_RUNS, interleaved; TOKEN: ES256's for es256, HS256's for the others"
        for mode in "${AUTH_BC_MODES[@]}"; do
            cat "$dir/$mode.bc.cmd"
        done
        echo "${gen}build/release/moor bench broadcast --sub-url 'ws://127.0.0.1:PORT/sub/bench?token=TOKEN' --pub-url 'ws://127.0.0.1:PORT/pub/bench?token=TOKEN' --conns $BC_CONNS --size 64B --inflight $BC_INFLIGHT --duration $BC_DURATION --warmup 1s --pid PID  # x $AUTH_RUNS"
        echo "${gen}build/release/moor bench broadcast ... --rate $BC_RATE  # instead of --inflight, x $AUTH_RUNS"
        echo "curl http://127.0.0.1:PORT/metrics  # moor_auth_total after each run"
    } >"$dir/commands"
    "$PY" "$ROOT/bench/auth_report.py" --dir "$dir" \
        --modes "${AUTH_MODES[*]}" --bc-modes "${AUTH_BC_MODES[*]}" \
        --version "$MOOR_VER" --date "$DATE" --cpu "$CPU ($(nproc) cores)" \
        --runs "$AUTH_RUNS" --openssl "$(openssl version | awk '{print $2}')" \
        --pyjwt "$("$PY" -c 'import jwt; print(jwt.__version__)')" \
        >>"$REPORT"
}

HC_PENDING=
want http && http_part
want ws && ws_part
want broadcast && bcast_part
want tls && tls_part
want http-client && http_client_part
want auth && auth_part

echo
cat "$REPORT"
if [ -n "$HC_PENDING" ]; then
    echo
    echo "<!-- not written to docs/benchmarks.md: moor's row is pending -->"
    cat "$HC_PENDING"
fi

if [ "$WRITE" = 1 ] && [ ! -s "$REPORT" ]; then
    echo "bench/run.sh: nothing to write to docs/benchmarks.md" >&2
elif [ "$WRITE" = 1 ]; then
    DOC=$ROOT/docs/benchmarks.md
    [ -f "$DOC" ] || printf '# Benchmarks\n\n' >"$DOC"
    # Each "## " section of the report replaces the document's sections
    # whose heading starts the same way ("## HTTP/1.1", "## WebSocket",
    # "## Broadcast", "## TLS", "## Client pool", "## Auth"),
    # where the first of them was (or at the end); other sections stay.
    "$PY" - "$DOC" "$REPORT" <<'EOF'
import re, sys
doc, rep = sys.argv[1], sys.argv[2]
text = open(doc).read()
report = open(rep).read()
for sec in re.split(r"(?m)^(?=## )", report):
    if not sec.startswith("## "):
        continue
    key = sec.split("\n", 1)[0][3:].split()[0]  # "HTTP/1.1", "WebSocket"
    new = sec.rstrip("\n") + "\n"
    head = re.compile(r"(?m)^## " + re.escape(key) + r"\b[^\n]*\n")
    first = None
    while True:
        m = head.search(text)
        if not m:
            break
        nxt = re.search(r"(?m)^## ", text[m.end():])
        end = m.end() + nxt.start() if nxt else len(text)
        if first is None:
            first = m.start()
        text = text[:m.start()] + text[end:]
    if first is None:
        text = text.rstrip("\n") + "\n\n" + new
    else:
        rest = text[first:]
        text = text[:first] + new + ("\n" if rest else "") + rest
open(doc, "w").write(text.rstrip("\n") + "\n")
EOF
    echo "wrote $DOC" >&2
fi
