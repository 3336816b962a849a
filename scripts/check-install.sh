#!/usr/bin/env bash
#
# check-install.sh - `make install` gives what a user builds against:
#
#   1. make install PREFIX=<a temporary directory>: bin/moor, include/moor.h,
#      lib/libmoor.a, lib/libmoor.so(.0), lib/pkgconfig/libmoor.pc,
#      lib/systemd/system/moor.service (starting PREFIX/bin/moor) and
#      share/man/man1/moor.1 (docs/moor.1);
#   2. pkg-config --modversion libmoor is moor.h's MOOR_VERSION_*;
#   3. examples/push_gateway.c, copied to a directory outside the tree, is
#      built with nothing but `cc push_gateway.c $(pkg-config --cflags --libs
#      libmoor)`, loads the installed libmoor.so, serves /healthz ("ok") and
#      POST /pub/ch (202), and on SIGTERM exits 0 with live_bytes=0.
#
# Prints what failed and exits 1, or "check-install: ok" and exits 0.
# Environment: CC (default cc).

set -u
cd "$(dirname "$0")/.." || exit 2
repo=$(pwd)
CC=${CC:-cc}

tmp=$(mktemp -d /tmp/moor-install.XXXXXX)
pid=
cleanup()
{
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

die()
{
    echo "check-install: $*"
    for f in "$tmp"/gw.out "$tmp"/gw.err; do
        [ -s "$f" ] && { echo "--- $(basename "$f"):"; tail -n 20 "$f"; }
    done
    exit 1
}

prefix=$tmp/prefix
make -s -C "$repo" install PREFIX="$prefix" >"$tmp/make.out" 2>&1 ||
    { tail -n 30 "$tmp/make.out"; die "make install PREFIX=$prefix failed"; }
for f in bin/moor include/moor.h lib/libmoor.a lib/libmoor.so lib/libmoor.so.0 \
    lib/pkgconfig/libmoor.pc lib/systemd/system/moor.service \
    share/man/man1/moor.1; do
    [ -e "$prefix/$f" ] || die "make install did not install $f"
done
grep -qxF "ExecStart=$prefix/bin/moor serve \$MOOR_ARGS" \
    "$prefix/lib/systemd/system/moor.service" ||
    die "moor.service does not start $prefix/bin/moor serve"
cmp -s docs/moor.1 "$prefix/share/man/man1/moor.1" ||
    die "share/man/man1/moor.1 is not docs/moor.1"

export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
want=$(for p in MAJOR MINOR PATCH; do
    sed -nE "s/^#define MOOR_VERSION_${p}[[:space:]]+([0-9]+).*/\1/p" include/moor.h
done | paste -sd.)
got=$(pkg-config --modversion libmoor) || die "pkg-config does not find libmoor"
[ "$got" = "$want" ] || die "libmoor.pc says version $got, moor.h $want"

# Built as a user would: a copy of the example, away from the tree.
mkdir "$tmp/user"
cp examples/push_gateway.c "$tmp/user/"
cd "$tmp/user" || die "cd $tmp/user"
# shellcheck disable=SC2046
$CC -std=c11 -Wall -Wextra -Werror -o push_gateway push_gateway.c \
    $(pkg-config --cflags --libs libmoor) >"$tmp/cc.out" 2>&1 ||
    { cat "$tmp/cc.out"; die "cc push_gateway.c \$(pkg-config --cflags --libs libmoor) failed"; }

export LD_LIBRARY_PATH=$prefix/lib
ldd ./push_gateway | grep -q "libmoor.so.0 => $prefix/lib/libmoor.so.0" ||
    die "push_gateway does not load $prefix/lib/libmoor.so.0: $(ldd ./push_gateway | grep moor)"

./push_gateway --listen 127.0.0.1:0 >"$tmp/gw.out" 2>"$tmp/gw.err" &
pid=$!
port=
for _ in $(seq 100); do
    port=$(sed -nE 's|^push_gateway: http://127\.0\.0\.1:([0-9]+).*|\1|p' "$tmp/gw.out")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$port" ] || die "no 'push_gateway: http://127.0.0.1:PORT' line within 10 s"

# One request over bash's /dev/tcp; prints the whole answer.
http()
{
    local req=$1
    # shellcheck disable=SC2016 # $0, $1: the inner shell's arguments
    timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" && printf "%b" "$1" >&3 && cat <&3' \
        "$port" "$req"
}
ans=$(http 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n') ||
    die "GET /healthz: no answer"
case $ans in
"HTTP/1.1 200 "*) ;;
*) die "GET /healthz: $ans" ;;
esac
[ "$(printf '%s' "$ans" | tail -n 1)" = "ok" ] || die "GET /healthz body: $ans"
ans=$(http 'POST /pub/news HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi') ||
    die "POST /pub/news: no answer"
case $ans in
"HTTP/1.1 202 "*'{"subscribers":0}'*) ;;
*) die "POST /pub/news: $ans" ;;
esac

kill -TERM "$pid"
rc=0
for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$pid" 2>/dev/null && die "still running 10 s after SIGTERM"
wait "$pid" || rc=$?
pid=
[ "$rc" = 0 ] || die "push_gateway exited $rc after SIGTERM"
grep -q 'live_bytes=0' "$tmp/gw.err" || die "no live_bytes=0 after shutdown"
echo "check-install: ok (libmoor $got; push_gateway built with pkg-config outside the tree, port $port)"
