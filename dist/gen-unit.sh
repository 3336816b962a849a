#!/bin/sh
#
# gen-unit.sh - writes the systemd unit moor.service: dist/moor.service.in
# (standard input) with its @NAMES@ filled in (standard output).
#
# usage: dist/gen-unit.sh MOOR_BINARY BINDIR < dist/moor.service.in
#
#   @BINDIR@            where `make install` put moor
#   @MAX_CONNS@         the default of --max-conns, and
#   @LIMIT_NOFILE@      that plus @NOFILE_HEADROOM@ (1024)
#   @SHUTDOWN_TIMEOUT@  the default of --shutdown-timeout, and
#   @TIMEOUT_STOP_SEC@  that in seconds (rounded up) plus @STOP_MARGIN_SEC@ (10)
#
# The defaults are read from the binary that is installed, out of `moor
# serve --limits-md` (the table docs/limits.md is made from, one row per
# flag), so changing a default in src/config.c changes the unit. Fails,
# writing nothing, if a default cannot be read or a name is left unfilled.
set -eu

NOFILE_HEADROOM=1024
STOP_MARGIN_SEC=10

if [ $# -ne 2 ]; then
    echo "usage: $0 MOOR_BINARY BINDIR < moor.service.in" >&2
    exit 2
fi
bin=$1
bindir=$2

md=$("$bin" serve --limits-md) || {
    echo "gen-unit.sh: $bin serve --limits-md failed" >&2
    exit 1
}

# The default of flag $1 as its row in the table shows it.
default_of()
{
    printf '%s\n' "$md" | sed -n "s/^| \`--$1\` | \`\([^\`]*\)\` |.*/\1/p"
}

max_conns=$(default_of max-conns)
case $max_conns in
'' | *[!0-9]*)
    echo "gen-unit.sh: no number for --max-conns in $bin serve --limits-md" >&2
    exit 1
    ;;
esac

shutdown=$(default_of shutdown-timeout)
# A duration of the flag table: an integer and ms, s, m or h; or 0.
num=${shutdown%ms}
num=${num%[smh]}
case $num in
'' | *[!0-9]*)
    echo "gen-unit.sh: no duration for --shutdown-timeout in $bin serve" \
        "--limits-md (\"$shutdown\")" >&2
    exit 1
    ;;
esac
case $shutdown in
*ms) secs=$(((num + 999) / 1000)) ;;
*s) secs=$num ;;
*m) secs=$((num * 60)) ;;
*h) secs=$((num * 3600)) ;;
*) secs=0 ;;
esac

unit=$(sed -e "s|@BINDIR@|$bindir|g" \
    -e "s|@MAX_CONNS@|$max_conns|g" \
    -e "s|@NOFILE_HEADROOM@|$NOFILE_HEADROOM|g" \
    -e "s|@LIMIT_NOFILE@|$((max_conns + NOFILE_HEADROOM))|g" \
    -e "s|@SHUTDOWN_TIMEOUT@|$shutdown|g" \
    -e "s|@STOP_MARGIN_SEC@|$STOP_MARGIN_SEC|g" \
    -e "s|@TIMEOUT_STOP_SEC@|$((secs + STOP_MARGIN_SEC))s|g")
left=$(printf '%s\n' "$unit" | grep -o '@[A-Z_]*@' | head -n 1) || true
if [ -n "$left" ]; then
    echo "gen-unit.sh: $left is not filled in" >&2
    exit 1
fi
printf '%s\n' "$unit"
