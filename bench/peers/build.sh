#!/usr/bin/env bash
# bench/peers/build.sh - builds the benchmark peers (run by the benchmark
# runner, never by `make test`).
#
#   build/peers/gorilla-echo   Go, github.com/gorilla/websocket (Debian package)
#   build/peers/lws-echo       C, libwebsockets (Debian package)
#   bench/peers/node/node_modules   npm `ws`, from the committed lock file
#   build/peers/go-http-idle   Go, net/http's Transport (standard library)
#   build/peers/curl-idle      C, libcurl's multi interface (Debian package)
#
# and installs libnginx-mod-http-echo, whose echo_sleep bench/nginx_http.py
# uses to hold requests.
#
# Installs the Debian packages it needs with apt-get when they are missing
# (as root; otherwise it names them and fails). Offline apart from apt and
# npm: Go builds in GOPATH mode against Debian's packaged sources in
# /usr/share/gocode, never through a module proxy. Idempotent: a peer whose
# output is newer than its sources is not rebuilt (--force rebuilds all).
#
# usage: bench/peers/build.sh [--force]
set -eu
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/build/peers
FORCE=0
for a in "$@"; do
    case $a in
    --force) FORCE=1 ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "peers: unknown argument $a" >&2; exit 2 ;;
    esac
done

fail() {
    echo "peers: $*" >&2
    exit 1
}

# --- Debian packages -------------------------------------------------------
PKGS="build-essential pkg-config golang-go golang-github-gorilla-websocket-dev \
libwebsockets-dev libcurl4-openssl-dev libnginx-mod-http-echo"
command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs"
command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"

# shellcheck disable=SC2086
"$ROOT/scripts/install-deps.sh" $PKGS || fail "could not install:$PKGS"

GOSRC=/usr/share/gocode
[ -d "$GOSRC/src/github.com/gorilla/websocket" ] ||
    fail "$GOSRC/src/github.com/gorilla/websocket not found (golang-github-gorilla-websocket-dev)"
command -v go >/dev/null 2>&1 || fail "go not found (golang-go)"
pkg-config --exists libwebsockets || fail "pkg-config cannot find libwebsockets (libwebsockets-dev)"
pkg-config --exists libcurl || fail "pkg-config cannot find libcurl (libcurl4-openssl-dev)"
command -v node >/dev/null 2>&1 || fail "node not found (nodejs)"
command -v npm >/dev/null 2>&1 || fail "npm not found"

mkdir -p "$OUT"

# stale OUTPUT SOURCE... -> true if OUTPUT is missing or older than a source
stale() {
    out=$1
    shift
    [ "$FORCE" = 1 ] && return 0
    [ -e "$out" ] || return 0
    for s in "$@"; do
        [ "$s" -nt "$out" ] && return 0
    done
    return 1
}

# --- gorilla ---------------------------------------------------------------
GORILLA_SRC=bench/peers/gorilla/main.go
if stale "$OUT/gorilla-echo" "$GORILLA_SRC" "$0"; then
    echo "peers: building build/peers/gorilla-echo ($(go version | cut -d' ' -f3), gorilla/websocket $(dpkg-query -W -f='${Version}' golang-github-gorilla-websocket-dev))"
    # GOPATH mode: imports resolve from Debian's /usr/share/gocode/src;
    # nothing is fetched.
    (cd bench/peers/gorilla &&
        env GO111MODULE=off GOPATH="$GOSRC" GOFLAGS= GOPROXY=off \
            GOCACHE="$OUT/.gocache" CGO_ENABLED=0 \
            go build -trimpath -o "$OUT/gorilla-echo.tmp" .) ||
        fail "go build of $GORILLA_SRC failed"
    mv "$OUT/gorilla-echo.tmp" "$OUT/gorilla-echo"
else
    echo "peers: build/peers/gorilla-echo is up to date"
fi

# --- libwebsockets ---------------------------------------------------------
LWS_SRC=bench/peers/lws/echo.c
if stale "$OUT/lws-echo" "$LWS_SRC" "$0"; then
    echo "peers: building build/peers/lws-echo (libwebsockets $(pkg-config --modversion libwebsockets | tr -d -))"
    # shellcheck disable=SC2046
    ${CC:-cc} -std=c11 -O2 -Wall -Wextra -o "$OUT/lws-echo.tmp" "$LWS_SRC" \
        $(pkg-config --cflags --libs libwebsockets) ||
        fail "cc of $LWS_SRC failed"
    mv "$OUT/lws-echo.tmp" "$OUT/lws-echo"
else
    echo "peers: build/peers/lws-echo is up to date"
fi

# --- Go net/http Transport (HTTP client idle pool) -------------------------
GOHTTP_SRC=bench/peers/go_http_idle/main.go
if stale "$OUT/go-http-idle" "$GOHTTP_SRC" "$0"; then
    echo "peers: building build/peers/go-http-idle ($(go version | cut -d' ' -f3), net/http)"
    # As gorilla: GOPATH mode, no go.mod; only the standard library.
    (cd bench/peers/go_http_idle &&
        env GO111MODULE=off GOPATH="$GOSRC" GOFLAGS= GOPROXY=off \
            GOCACHE="$OUT/.gocache" CGO_ENABLED=0 \
            go build -trimpath -o "$OUT/go-http-idle.tmp" .) ||
        fail "go build of $GOHTTP_SRC failed"
    mv "$OUT/go-http-idle.tmp" "$OUT/go-http-idle"
else
    echo "peers: build/peers/go-http-idle is up to date"
fi

# --- libcurl multi (HTTP client idle pool) ---------------------------------
CURL_SRC=bench/peers/curl_idle/curl_idle.c
if stale "$OUT/curl-idle" "$CURL_SRC" "$0"; then
    echo "peers: building build/peers/curl-idle (libcurl $(pkg-config --modversion libcurl))"
    # shellcheck disable=SC2046
    ${CC:-cc} -std=c11 -O2 -Wall -Wextra -o "$OUT/curl-idle.tmp" "$CURL_SRC" \
        $(pkg-config --cflags --libs libcurl) ||
        fail "cc of $CURL_SRC failed"
    mv "$OUT/curl-idle.tmp" "$OUT/curl-idle"
else
    echo "peers: build/peers/curl-idle is up to date"
fi

# --- node ws ---------------------------------------------------------------
NODE_DIR=bench/peers/node
if [ "$FORCE" = 1 ] || [ ! -f "$NODE_DIR/node_modules/ws/package.json" ] ||
    [ "$NODE_DIR/package-lock.json" -nt "$NODE_DIR/node_modules/.package-lock.json" ]; then
    echo "peers: npm ci in $NODE_DIR (node $(node --version))"
    npm ci --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error >/dev/null ||
        fail "npm ci --prefix $NODE_DIR failed"
else
    echo "peers: $NODE_DIR/node_modules is up to date"
fi
echo "peers: ready: build/peers/gorilla-echo, build/peers/lws-echo," \
    "build/peers/go-http-idle, build/peers/curl-idle," \
    "node $NODE_DIR/server.js (ws $(node -p "require('./$NODE_DIR/node_modules/ws/package.json').version"))"
