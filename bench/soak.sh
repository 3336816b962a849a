#!/usr/bin/env bash
# bench/soak.sh - `make soak`: moor itself under `moor soak`, one run per
# kind of traffic, each against a fresh `moor serve` on free ports, each
# with its report in build/soak/KIND/ (samples.csv, summary.json,
# plot.svg, report.html) and an index in build/soak/index.html.
#
#   echo    ws:// /echo: echo messages, faults (slow readers, vanished
#           peers, half frames, half handshakes), clean and RST closes
#   pubsub  WebSocket subscribers of /sub/soak, a publisher on /pub/soak
#   sse     Server-Sent Events subscribers of /sub/soak, the same publisher
#   http    HTTP/1.1 keep-alive GETs of /healthz
#
# SOAK_SECONDS (default 600: ten minutes in all) is shared among them.
# Exit status: 0 when every run says no leak, else 1 (a leak, or a run
# that could not be made; each says which).
set -u
cd "$(dirname "$0")/.." || exit 2

MOOR=${MOOR:-build/release/moor}
OUT=${SOAK_OUT:-build/soak}
TOTAL=${SOAK_SECONDS:-600}
KINDS=(echo pubsub sse http)
EACH=$((TOTAL / ${#KINDS[@]}))
[ "$EACH" -ge 20 ] || EACH=20

[ -x "$MOOR" ] || { echo "soak: $MOOR missing (make release)" >&2; exit 2; }
mkdir -p "$OUT"
status=0
rows=""

for kind in "${KINDS[@]}"; do
    dir="$OUT/$kind"
    rm -rf "$dir"
    mkdir -p "$dir"
    "$MOOR" serve --listen 127.0.0.1:0 --log-level warn \
        >"$dir/serve.out" 2>"$dir/serve.err" &
    pid=$!
    port=""
    for _ in $(seq 1 100); do
        port=$(sed -n 's|^moor .* serving http://127\.0\.0\.1:\([0-9]*\).*|\1|p' \
            "$dir/serve.out")
        [ -n "$port" ] && break
        sleep 0.05
    done
    if [ -z "$port" ]; then
        echo "soak $kind: moor serve did not start" >&2
        kill "$pid" 2>/dev/null
        status=1
        continue
    fi
    base=127.0.0.1:$port
    case $kind in
    echo) args=(--url "ws://$base/echo") ;;
    pubsub) args=(--url "ws://$base/sub/soak" --pub-url "ws://$base/pub/soak") ;;
    sse) args=(--url "http://$base/sub/soak" --pub-url "ws://$base/pub/soak") ;;
    http) args=(--url "http://$base/healthz") ;;
    esac
    echo "== soak $kind: ${EACH}s against moor serve on $base (pid $pid)"
    "$MOOR" soak "${args[@]}" --pid "$pid" --rounds 0 --duration "${EACH}s" \
        --warmup 5 --out "$dir" 2>"$dir/progress.txt" | tee "$dir/verdict.txt"
    rc=${PIPESTATUS[0]}
    tail -n 1 "$dir/progress.txt"
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    [ "$rc" = 0 ] || status=1
    verdict=$(grep -m1 '^verdict:' "$dir/verdict.txt" || echo "exit $rc")
    rows="$rows<tr><td><a href=\"$kind/report.html\">$kind</a></td><td>$verdict</td></tr>"
done

cat >"$OUT/index.html" <<EOF
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>moor soak</title>
<style>body{font:14px sans-serif;margin:24px}td{padding:4px 12px}</style>
</head><body><h1>make soak: moor under moor soak</h1>
<p>${EACH} s per kind of traffic; each row links to its report.</p>
<table>$rows</table></body></html>
EOF
echo "reports: $OUT/index.html"
exit $status
