#!/bin/sh
# fuzz.sh - build every fuzz/fuzz_*.c with clang (libFuzzer + ASan + UBSan)
# into build/fuzz/ and run each for N seconds (default 60) on a copy of its
# seed corpus, so the repository's corpus is never written to.
#
# Usage: scripts/fuzz.sh [seconds] [target...]
#   scripts/fuzz.sh            every target, 60 s each
#   scripts/fuzz.sh 300 http1  only fuzz/fuzz_http1.c, for 5 minutes
#   scripts/fuzz.sh 60 http_response   the response parser (HTTP client)
#   scripts/fuzz.sh 60 jwt     the token checker and its JSON reader
#   scripts/fuzz.sh 600 conn   fuzz_conn: whole connections through the
#                              routes of `moor serve` (docs/fuzzing.md)
#   scripts/fuzz.sh 120 http_client   whole connections through the
#                              pooled HTTP client against a scripted server
# Each target runs for the seconds asked, however many (libFuzzer's
# -max_total_time); `make fuzz FUZZ_SECONDS=N` passes N here. tests/run
# gives the parser targets and fuzz_http_client 10 s each and fuzz_conn
# 60 s.
#
# Exit status: 0 if every target ran clean, 1 if any target crashed (or
# failed a CHECK, leaked, timed out), 2 if the tools or a build failed.
# Crash inputs land in build/fuzz/artifacts-<target>/.
set -u

cd "$(dirname "$0")/.." || exit 2

SECONDS_EACH=${1:-60}
[ $# -gt 0 ] && shift
OUT=build/fuzz
CC=${FUZZ_CC:-clang}
CFLAGS="-std=c11 -D_GNU_SOURCE -Iinclude -Isrc -g -O1 -fno-omit-frame-pointer \
-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
-DMOOR_VERSION=\"fuzz\""

# The sources each target links besides fuzz/fuzz_<target>.c. Parsers are
# pure, so most need only their own file; add mem.c / buf.c only where the
# code under test really calls them. A target not listed here gets
# src/<target>.c plus src/mem.c, each if it exists.
sources_for() {
    case "$1" in
    http1) echo "src/http1.c" ;;
    http_response) echo "src/http1_response.c src/http1.c" ;;
    ws | ws_handshake) echo "src/ws.c src/url.c src/http1.c" ;;
    frame) echo "src/frame.c" ;;
    sse) echo "src/sse.c" ;;
    # The token checker, its JSON reader, the channel name rule and the
    # allocator it counts its bytes with.
    jwt) echo "src/jwt.c src/json.c src/frame.c src/mem.c src/buf.c" ;;
    # Whole connections through the routes of `moor serve`: the library
    # and the app's serve.c, config.c and flags.c (all of src/*.c but the
    # command dispatcher; the load generator is src/bench/).
    conn) ls src/*.c | grep -v -e '^src/main\.c$' | tr '\n' ' ' ;;
    # Whole connections through the pooled HTTP client: the library alone
    # (all of src/*.c but the app's files, as the Makefile's LIB_SRCS).
    http_client)
        ls src/*.c | grep -v -e '^src/main\.c$' -e '^src/serve\.c$' \
            -e '^src/config\.c$' -e '^src/flags\.c$' -e '^src/signals\.c$' \
            -e '^src/sdnotify\.c$' |
            tr '\n' ' '
        ;;
    *)
        s=""
        [ -f "src/$1.c" ] && s="src/$1.c"
        [ -f src/mem.c ] && s="$s src/mem.c"
        echo "$s"
        ;;
    esac
}

# Extra libraries per target (the WebSocket handshake needs SHA-1).
libs_for() {
    case "$1" in
    ws | ws_handshake) echo "-lcrypto" ;;
    jwt) echo "-lcrypto -lm -pthread" ;;
    # fuzz_conn links serve.c, whose src/sdnotify.c calls libsystemd.
    conn) echo "-lssl -lcrypto -lcares -lz -lm -pthread -lsystemd" ;;
    http_client) echo "-lssl -lcrypto -lcares -lz -lm -pthread" ;;
    *) echo "" ;;
    esac
}

# Extra compiler flags per target. fuzz_conn owns moor's clock: its
# sources call fuzz_clock_gettime (defined in fuzz/fuzz_conn.c), so an
# input can move time forward and deadlines and token expiry fire.
cflags_for() {
    case "$1" in
    conn) echo "-Dclock_gettime=fuzz_clock_gettime" ;;
    *) echo "" ;;
    esac
}

if ! command -v "$CC" >/dev/null 2>&1; then
    echo "fuzz.sh: $CC not found (apt-get install clang)" >&2
    exit 2
fi

if [ $# -gt 0 ]; then
    targets=$*
else
    targets=""
    for f in fuzz/fuzz_*.c; do
        [ -f "$f" ] || continue
        t=${f#fuzz/fuzz_}
        targets="$targets ${t%.c}"
    done
fi
if [ -z "$targets" ]; then
    echo "fuzz.sh: no fuzz/fuzz_*.c targets" >&2
    exit 2
fi

mkdir -p "$OUT"
crashed=""
broken=""
for t in $targets; do
    bin=$OUT/fuzz_$t
    srcs=$(sources_for "$t")
    for s in $srcs; do
        if [ ! -f "$s" ]; then
            echo "fuzz.sh: $t: missing $s" >&2
            broken="$broken $t"
            continue 2
        fi
    done
    libs=$(libs_for "$t")
    extra=$(cflags_for "$t")
    echo "== build $t: fuzz/fuzz_$t.c $srcs $libs $extra"
    # shellcheck disable=SC2086 # word splitting of the lists is intended
    if ! $CC $CFLAGS $extra -o "$bin" "fuzz/fuzz_$t.c" $srcs $libs; then
        broken="$broken $t"
        continue
    fi

    corpus=$OUT/corpus-$t
    artifacts=$OUT/artifacts-$t
    mkdir -p "$corpus" "$artifacts"
    # Seeds are copied in; what the fuzzer adds stays in build/.
    if [ -d "fuzz/corpus/$t" ]; then
        cp -R "fuzz/corpus/$t/." "$corpus/"
    fi
    dict=""
    [ -f "fuzz/dict/$t.dict" ] && dict="-dict=fuzz/dict/$t.dict"

    echo "== run $t for ${SECONDS_EACH}s"
    # shellcheck disable=SC2086
    if ! "$bin" -max_total_time="$SECONDS_EACH" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" $dict "$corpus"; then
        crashed="$crashed $t"
    fi
done

if [ -n "$broken" ]; then
    echo "fuzz.sh: could not build:$broken" >&2
fi
if [ -n "$crashed" ]; then
    echo "fuzz.sh: crashes found in:$crashed (see $OUT/artifacts-*)" >&2
    exit 1
fi
[ -n "$broken" ] && exit 2
echo "fuzz.sh: all targets clean"
exit 0
