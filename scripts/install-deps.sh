#!/bin/sh
# Installs what moor needs that is not installed yet: Debian 12 packages
# with apt-get (as root), and the node test client's npm packages.
# usage: scripts/install-deps.sh [PACKAGE ...] Run by
# `make run` and `make test`. Idempotent and quiet when nothing is missing.
set -eu
cd "$(dirname "$0")/.."

# With arguments, installs exactly those packages (if missing) and nothing
# else: bench/peers/build.sh uses it for the benchmark peers' packages.
if [ $# -gt 0 ]; then
    PKGS="$*"
else
    PKGS="build-essential clang clang-format pkg-config libssl-dev \
libc-ares-dev libcmocka-dev python3 python3-pytest python3-websockets curl \
wrk nginx-light prometheus chromium python3-jwt python3-cryptography \
influxdb zlib1g-dev victoria-metrics"
    # libsystemd-dev: sd_notify() for `moor serve` under systemd
    # (src/sdnotify.c; linked into the moor binary only, not libmoor).
    PKGS="$PKGS libsystemd-dev"
    # influxdb (1.6): tests/integration/test_influx.py starts its own
    # influxd on free ports and reads back what --influx-url wrote.
    # zlib1g-dev: --influx-gzip compresses the InfluxDB writes (src/influx.c).
    # victoria-metrics: test_influx.py also writes to a VictoriaMetrics of
    # its own (v1 and v2 write paths) and reads the points back.
    # python3-jwt and python3-cryptography make the tokens test_jwt checks
    # (tests/unit/jwt_tokens.py), so they come from another implementation.
    # chromium (large, ~290 MB with its libraries) is the project's headless
    # browser for pages: tests/integration/test_sse_tcp.py runs EventSource
    # in it (chromium --headless --dump-dom).
    # Node.js for the `ws` interop client: Debian's, unless a node is present.
    command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs"
    command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"
fi

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "moor: missing Debian packages:$missing" >&2
        echo "moor: run as root, or: sudo apt-get install$missing" >&2
        exit 1
    fi
    echo "moor: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# npm packages of the tests (the node `ws` client; jsonwebtoken, the
# second implementation whose tokens test_jwt checks), from the committed
# lock file; installed again when one of them is missing.
NODE_DIR=tests/integration/node
[ $# -gt 0 ] && exit 0
if [ -f "$NODE_DIR/package-lock.json" ] && { [ ! -d "$NODE_DIR/node_modules/ws" ] ||
    [ ! -d "$NODE_DIR/node_modules/jsonwebtoken" ]; }; then
    echo "moor: installing npm packages in $NODE_DIR"
    npm ci --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error >/dev/null
fi
