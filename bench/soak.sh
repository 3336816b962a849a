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
#   tls     wss:// /echo on --tls-listen, a self-signed certificate made
#           in build/soak/tls-cert/ (--tls-ca)
#   tcp     pub/sub over --tcp-listen's length-prefixed frames: subscribers
#           and the publisher on tcp://.../soak
#
# SOAK_SECONDS (default 600: ten minutes in all) is shared among them;
# SOAK_KINDS (default all six) picks some, e.g. SOAK_KINDS="tls tcp".
# Exit status: 0 when every run says no leak, else 1 (a leak, or a run
# that could not be made; each says which).
set -u
cd "$(dirname "$0")/.." || exit 2

MOOR=${MOOR:-build/release/moor}
OUT=${SOAK_OUT:-build/soak}
TOTAL=${SOAK_SECONDS:-600}
KINDS=(${SOAK_KINDS:-echo pubsub sse http tls tcp})
EACH=$((TOTAL / ${#KINDS[@]}))
[ "$EACH" -ge 20 ] || EACH=20

[ -x "$MOOR" ] || { echo "soak: $MOOR missing (make release)" >&2; exit 2; }
mkdir -p "$OUT"
status=0
certdir="$OUT/tls-cert"
if [[ " ${KINDS[*]} " == *" tls "* ]] && [ ! -s "$certdir/cert.pem" ]; then
    mkdir -p "$certdir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$certdir/key.pem" -out "$certdir/cert.pem" -days 30 \
        -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
        2>"$certdir/openssl.err" ||
        { echo "soak: openssl could not make a certificate" >&2; exit 2; }
fi
rows=""

for kind in "${KINDS[@]}"; do
    dir="$OUT/$kind"
    rm -rf "$dir"
    mkdir -p "$dir"
    extra=()
    case $kind in
    tls) extra=(--tls-listen 127.0.0.1:0 --tls-cert "$certdir/cert.pem"
        --tls-key "$certdir/key.pem") ;;
    tcp) extra=(--tcp-listen 127.0.0.1:0) ;;
    esac
    "$MOOR" serve --listen 127.0.0.1:0 --log-level warn "${extra[@]}" \
        >"$dir/serve.out" 2>"$dir/serve.err" &
    pid=$!
    port=""
    for _ in $(seq 1 100); do
        port=$(sed -n 's|^moor .* serving http://127\.0\.0\.1:\([0-9]*\).*|\1|p' \
            "$dir/serve.out")
        [ -n "$port" ] && grep -q '^Stop with' "$dir/serve.out" && break
        sleep 0.05
    done
    if [ -z "$port" ]; then
        echo "soak $kind: moor serve did not start" >&2
        kill "$pid" 2>/dev/null
        status=1
        continue
    fi
    base=127.0.0.1:$port
    # The TLS and TCP listeners' ports (their banner lines).
    tport=$(sed -n 's|^ *https://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$dir/serve.out")
    fport=$(sed -n 's|^ *tcp://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$dir/serve.out")
    case $kind in
    echo) args=(--url "ws://$base/echo") ;;
    pubsub) args=(--url "ws://$base/sub/soak" --pub-url "ws://$base/pub/soak") ;;
    sse) args=(--url "http://$base/sub/soak" --pub-url "ws://$base/pub/soak") ;;
    http) args=(--url "http://$base/healthz") ;;
    tls) args=(--url "wss://127.0.0.1:$tport/echo" --tls-ca "$certdir/cert.pem") ;;
    tcp) args=(--url "tcp://127.0.0.1:$fport/soak"
        --pub-url "tcp://127.0.0.1:$fport/soak") ;;
    esac
    echo "== soak $kind: ${EACH}s against moor serve on $base (pid $pid)"
    "$MOOR" soak "${args[@]}" --pid "$pid" --rounds 0 --duration "${EACH}s" \
        --warmup 5 --mem-url "http://$base/debug/mem" --out "$dir" 2>"$dir/progress.txt" | tee "$dir/verdict.txt"
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
