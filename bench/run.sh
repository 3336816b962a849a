#!/usr/bin/env bash
# bench/run.sh - moor beside nginx on one core (`make bench` runs it).
#
#   (a) requests/s: wrk (pinned to core 1) against GET /healthz of
#       build/release/moor, then of nginx (each pinned to core 0, one after
#       the other, never at the same time).
#   (b) idle memory: bench/idle_conns.py opens N keep-alive connections,
#       one GET each, holds them idle, and reports the server's VmRSS growth
#       per connection (for nginx: its worker process).
#
# usage: bench/run.sh [--write] [--conns N] [--duration 10s]
#   --write      replace the "## HTTP/1.1" section of docs/benchmarks.md
#   --conns N    idle connections for (b) (default 10000)
#   --duration D wrk duration (default 10s)
#
# Never part of the tests: figures depend on the machine. Everything it
# starts is stopped on exit (trap), and every step has a timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

WRITE=0
CONNS=10000
DURATION=10s
while [ $# -gt 0 ]; do
    case $1 in
    --write) WRITE=1 ;;
    --conns) CONNS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

MOOR=$ROOT/build/release/moor
PY=/usr/bin/python3
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for tool in "$MOOR" "$NGINX" wrk taskset "$PY"; do
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

wait_http() {   # url: until it answers 200, at most 10 s
    for _ in $(seq 100); do
        if curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "bench/run.sh: $1 never answered" >&2
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

# start_moor ARGS... -> sets SRV_PID, SRV_PORT
start_moor() {
    local out=$TMP/moor.out
    : >"$out"
    "${PIN_SRV[@]}" "$MOOR" serve --listen 127.0.0.1:0 "$@" >"$out" 2>"$TMP/moor.err" &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    SRV_PORT=
    for _ in $(seq 100); do
        SRV_PORT=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$out" | head -n1 |
            sed 's/.*://') || true
        [ -n "$SRV_PORT" ] && break
        sleep 0.1
    done
    if [ -z "$SRV_PORT" ]; then
        echo "bench/run.sh: moor did not start:" >&2
        cat "$TMP/moor.err" >&2
        exit 1
    fi
    # $! may be a wrapper shell; the banner names the server's own pid.
    local real
    real=$(grep -oE '\(pid [0-9]+\)' "$out" | head -n1 | tr -dc '0-9') || true
    if [ -n "$real" ] && [ "$real" != "$SRV_PID" ]; then
        SRV_PID=$real
        PIDS+=("$SRV_PID")
    fi
    wait_http "http://127.0.0.1:$SRV_PORT/healthz"
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

WRK_CMD="${PIN_GEN[*]:+${PIN_GEN[*]} }wrk -t1 -c64 -d$DURATION http://127.0.0.1:PORT/healthz"
MOOR_RPS_CMD="${PIN_SRV[*]:+${PIN_SRV[*]} }build/release/moor serve --listen 127.0.0.1:0"
MOOR_IDLE_CMD="${PIN_SRV[*]:+${PIN_SRV[*]} }build/release/moor serve --listen 127.0.0.1:0 --accept-rate 0 --max-conns $((CONNS + 1000)) --idle-timeout 600s"
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
start_moor --accept-rate 0 --max-conns $((CONNS + 1000)) --idle-timeout 600s
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
DATE=$(date -u +%Y-%m-%d)
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
NGINX_VER=$("$NGINX" -v 2>&1 | sed 's/.*: //')
MOOR_VER=$("$MOOR" --version)

REPORT=$TMP/report.md
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
} >"$REPORT"

echo
cat "$REPORT"

if [ "$WRITE" = 1 ]; then
    DOC=$ROOT/docs/benchmarks.md
    [ -f "$DOC" ] || printf '# Benchmarks\n\n' >"$DOC"
    # Drop the old "## HTTP/1.1" section (up to the next "## " heading),
    # then append the new one where it was (or at the end).
    "$PY" - "$DOC" "$REPORT" <<'EOF'
import re, sys
doc, rep = sys.argv[1], sys.argv[2]
text = open(doc).read()
new = open(rep).read().rstrip("\n") + "\n"
m = re.search(r"(?m)^## HTTP/1\.1[^\n]*\n", text)
if m:
    nxt = re.search(r"(?m)^## ", text[m.end():])
    end = m.end() + nxt.start() if nxt else len(text)
    text = text[:m.start()] + new + ("\n" if nxt else "") + text[end:]
else:
    text = text.rstrip("\n") + "\n\n" + new
open(doc, "w").write(text)
EOF
    echo "wrote $DOC" >&2
fi
