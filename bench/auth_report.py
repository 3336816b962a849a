#!/usr/bin/python3
"""bench/auth_report.py - the "## Auth" section of docs/benchmarks.md, from
what bench/run.sh --only auth left in its directory.

Reads, in --dir, for every MODE in --modes (none, hs256, es256,
callback):
MODE.hs1.json ... MODE.hsR.json (`moor bench handshake --json` on
/sub/bench?token=TOKEN), MODE.hsI.auth (moor_auth_total after the run:
{"allowed": A, "denied": D}) and MODE.cmd; for every MODE in --bc-modes:
MODE.tputI.json and MODE.latI.json (`moor bench broadcast --json`,
throughput and fixed rate), their .auth files and MODE.bc.cmd; and
`commands`. Writes Markdown to stdout: the handshake table (the median
of each configuration, ratios against no auth, the CPU each token check
adds), every run of each configuration in a table of its own, the
broadcast tables with auth off and on, what is not measured (echo) or
the callback's service, the method and the commands.

Only the standard library (and ws_report.py's helpers, beside it).
"""
import argparse
import os
import statistics
import sys

from ws_report import (busy_note, failures, load, median_by, para, ratio,
                       thousands, us)

BASE = "none"
LABEL = {
    "none": "no auth",
    "hs256": "`--auth jwt`, HS256",
    "es256": "`--auth jwt`, ES256 (P-256)",
    "callback": "`--auth url` (nginx answering 204)",
}


def cpu_pct(v):
    return "-" if v is None else f"{v:.0f}%"


def cpu_per_hs(r):
    """The server's CPU time per handshake in the measured window, in
    microseconds (its utime + stime over the window, from /proc/PID/stat
    at the window's two ends, over the handshakes counted), or None."""
    if r.get("server_cpu_pct") is None or not r.get("handshakes"):
        return None
    return r["server_cpu_pct"] / 100.0 * r["duration_s"] / r["handshakes"] \
        * 1e6


def checks(mode, runs_auth, runs):
    """The token-check note of one configuration: "" when every handshake
    (or subscription) was let through by its token and none refused (or,
    without auth, none checked at all); else what went wrong."""
    allowed = sum(a["allowed"] for a in runs_auth)
    denied = sum(a["denied"] for a in runs_auth)
    if mode == BASE:
        return "" if allowed == denied == 0 else \
            f" (**{allowed} tokens checked without auth?**)"
    need = sum(r.get("handshakes_in_run", 0) for r in runs)
    if denied:
        return f" (**{denied} tokens refused**)"
    if allowed < need:
        return f" (**{allowed} tokens checked for {need} handshakes**)"
    return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--modes", required=True, help="space-separated")
    ap.add_argument("--bc-modes", required=True, help="space-separated")
    ap.add_argument("--version", required=True, help="moor's --version")
    ap.add_argument("--date", required=True)
    ap.add_argument("--cpu", required=True)
    ap.add_argument("--runs", type=int, required=True)
    ap.add_argument("--openssl", required=True)
    ap.add_argument("--pyjwt", required=True)
    a = ap.parse_args()

    d = a.dir
    modes = a.modes.split()
    bc_modes = a.bc_modes.split()
    rng = range(1, a.runs + 1)

    def runs_of(mode, kind):
        return ([load(os.path.join(d, f"{mode}.{kind}{i}.json")) for i in rng],
                [load(os.path.join(d, f"{mode}.{kind}{i}.auth"))
                 for i in rng])

    hs, hs_auth, med, cost = {}, {}, {}, {}
    for m in modes:
        hs[m], hs_auth[m] = runs_of(m, "hs")
        med[m] = median_by(hs[m], lambda r: r["handshakes_per_s"])
        c = [x for x in (cpu_per_hs(r) for r in hs[m]) if x is not None]
        cost[m] = statistics.median(c) if c else None
    tput, tput_auth, lat, lat_auth = {}, {}, {}, {}
    for m in bc_modes:
        tput[m], tput_auth[m] = runs_of(m, "tput")
        lat[m], lat_auth[m] = runs_of(m, "lat")
    with open(os.path.join(d, "commands")) as f:
        commands = f.read().rstrip("\n")

    out = sys.stdout.write
    toklen = {}
    for alg in ("hs256", "es256"):
        with open(os.path.join(d, "keys", f"{alg}.tok")) as f:
            toklen[alg] = len(f.read().strip())
    base_rate = med.get(BASE, {}).get("handshakes_per_s")
    base_cost = cost.get(BASE)
    h0 = med[modes[0]]

    out("## Auth\n\n")
    out(para(f"Measured {a.date} on {a.cpu}, {a.version}. moor alone "
             "(issue 16: what `--auth jwt` costs), pinned to core 0; `moor "
             "bench` (moor's own WebSocket client, one thread) pinned to "
             "core 1. The server configurations: no auth; `--auth jwt "
             "--jwt-secret-file` with a 32-byte HMAC secret (HS256); `--auth "
             "jwt --jwt-key-file` with a P-256 public key (ES256), verified "
             f"by moor through OpenSSL {a.openssl}; and `--auth url`, each "
             "handshake asked of an auth service (below). The tokens were made for "
             f"the run by PyJWT {a.pyjwt} (python3-jwt), subject `bench`, "
             "subscribe and publish on `bench`, valid a day. Ratios are "
             "against no auth in the same run; the configurations' runs "
             "were interleaved (none, hs256, es256, none, ...), each on a "
             "fresh server."))

    out(para(
        f"Handshakes: `moor bench handshake` on `/sub/bench?token=TOKEN`, "
        f"{h0['conns']} connections at a time, each closed outright as soon "
        "as its WebSocket upgrade is done (the 101 checked: the token "
        "verified, the subscription made) and replaced by a new one; "
        f"{h0['duration_s']:.0f} s after {h0['warmup_s']:.0f} s of warm-up; "
        f"median of {a.runs} runs. Without auth the URL is the same, with "
        "the HS256 token, which moor then ignores: every configuration "
        f"reads the same request but ES256, whose token is "
        f"{toklen['es256'] - toklen['hs256']} bytes longer ({toklen['es256']} "
        f"B against {toklen['hs256']} B). CPU per "
        "handshake is the server's user + system time over the measured "
        "window divided by the handshakes counted in it; added is that "
        "minus no auth's, the CPU one token check costs."))
    out("| server | handshakes/s | vs no auth | CPU/handshake | vs no auth "
        "| added | p50 | p99 | server CPU | bench CPU |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    for m in modes:
        r = med[m]
        lt = r["latency_us"]
        added = "-" if m == BASE or cost[m] is None or base_cost is None \
            else f"{cost[m] - base_cost:+.1f} us"
        out(f"| {LABEL.get(m, m)} | {thousands(r['handshakes_per_s'])} | "
            f"{ratio(r['handshakes_per_s'], base_rate)} | "
            + ("-" if cost[m] is None else f"{cost[m]:.1f} us")
            + f" | {ratio(cost[m], base_cost)} | {added} | {us(lt['p50'])} | "
            f"{us(lt['p99'])} | {cpu_pct(r['server_cpu_pct'])} | "
            f"{r['bench_cpu_pct']:.0f}%"
            f"{checks(m, hs_auth[m], hs[m])} |\n")
    busy = [LABEL.get(m, m) for m in modes
            if med[m]["bench_cpu_pct"] >= 90]
    out(busy_note(busy, "handshakes/s"))
    if busy:
        out("\n" + para(
            "CPU per handshake does not depend on how fast the client "
            "is: compare the configurations by it.").rstrip("\n") + "\n")
    out("\n" + para(
        "handshakes/s, p50, p99 and the CPU columns are the median run's "
        "(by handshakes/s); CPU/handshake is the median of the runs' own. "
        "Every run:").rstrip("\n") + "\n")
    for m in modes:
        out(f"\n{LABEL.get(m, m)}:\n\n")
        out("| run | handshakes/s | CPU/handshake | p50 | p99 | server CPU "
            "| bench CPU | failed | tokens allowed / refused |\n"
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
        for i, (r, au) in enumerate(zip(hs[m], hs_auth[m]), 1):
            c = cpu_per_hs(r)
            lt = r["latency_us"]
            toks = "- (auth off)" if m == BASE and not au["allowed"] \
                and not au["denied"] \
                else f"{au['allowed']:,} / {au['denied']:,}"
            out(f"| {i} | {thousands(r['handshakes_per_s'])} | "
                + ("-" if c is None else f"{c:.1f} us")
                + f" | {us(lt['p50'])} | {us(lt['p99'])} | "
                f"{cpu_pct(r['server_cpu_pct'])} | "
                f"{r['bench_cpu_pct']:.0f}% | {r['failed']}"
                f"{failures(r)} | {toks} |\n")

    if bc_modes:
        t0 = median_by(tput[bc_modes[0]], lambda r: r["deliveries_per_s"])
        l0 = median_by(lat[bc_modes[0]], lambda r: r["latency_us"]["p99"])
        base_t = median_by(tput[BASE], lambda r: r["deliveries_per_s"]) \
            ["deliveries_per_s"] if BASE in tput else None
        out("\n" + para(
            "Broadcast with auth on: the Broadcast section's runs, "
            f"{t0['subscribers']:,} subscribers on `/sub/bench?token=TOKEN` "
            "and one publisher on `/pub/bench?token=TOKEN`, 64 B messages, "
            f"{t0['duration_s']:.0f} s after {t0['warmup_s']:.0f} s of "
            f"warm-up, without auth and with HS256 (the token is checked "
            "once per connection, at its upgrade; after that a delivery "
            f"costs the same, which is what this shows); median of "
            f"{a.runs} runs. Throughput: at most {t0['inflight']} messages "
            "in flight."))
        out("| server | deliveries/s | vs no auth | p50 | p99 | server CPU "
            "| bench CPU | every run (deliveries/s) |\n"
            "|---|---:|---:|---:|---:|---:|---:|---|\n")
        for m in bc_modes:
            r = median_by(tput[m], lambda x: x["deliveries_per_s"])
            lt = r["latency_us"]
            every = ", ".join(thousands(x["deliveries_per_s"])
                              for x in tput[m])
            out(f"| {LABEL.get(m, m)} | {thousands(r['deliveries_per_s'])} | "
                f"{ratio(r['deliveries_per_s'], base_t)} | "
                f"{us(lt['p50'])} | {us(lt['p99'])} | "
                f"{cpu_pct(r['server_cpu_pct'])} | {r['bench_cpu_pct']:.0f}% "
                f"| {every}{failures(r)}"
                f"{checks_bc(m, tput_auth[m], tput[m])} |\n")
        out(busy_note([LABEL.get(m, m) for m in bc_modes
                       if median_by(tput[m], lambda x: x["deliveries_per_s"])
                       ["bench_cpu_pct"] >= 90], "deliveries/s"))
        out("\n" + para(
            f"Latency: {l0['rate']} messages/s, publish-to-receive over "
            "every delivery; the median run by p99."))
        out("| server | p50 | p99 | p999 | server CPU | every run (p99) |\n"
            "|---|---:|---:|---:|---:|---|\n")
        for m in bc_modes:
            r = median_by(lat[m], lambda x: x["latency_us"]["p99"])
            lt = r["latency_us"]
            every = ", ".join(us(x["latency_us"]["p99"]) for x in lat[m])
            out(f"| {LABEL.get(m, m)} | {us(lt['p50'])} | {us(lt['p99'])} | "
                f"{us(lt['p999'])} | {cpu_pct(r['server_cpu_pct'])} | "
                f"{every}{failures(r)}"
                f"{checks_bc(m, lat_auth[m], lat[m])} |\n")

    out("\n" + para(
        "Echo is not measured with auth: `/echo` is not behind `--auth` "
        "(only `/sub` and `/pub` are, docs/auth.md), so a server with "
        "`--auth jwt` runs exactly the same code for it; its figures are "
        "the WebSocket section's."))
    if "callback" in modes:
        out(para(
            "The callback row: `--auth url` asks an nginx 1.22 (one worker, "
            "on the load generator's core, `location = /allow { return 204; "
            "}`) about every handshake, over moor's pooled HTTP client on "
            "the server's loop; the handshake waits for the answer holding "
            "only its own bytes. Its CPU per handshake is moor's alone "
            "(nginx's is not counted): building and sending the question, "
            "reading the answer, routing the request again."))
    out(para(
        "Method. The tokens go in the URL's query (`?token=`, as a browser "
        "would send them), not in an `Authorization` header: `moor bench` "
        "sends the URL's path and query as the request target. After each "
        "run moor's `moor_auth_total` is read: every handshake of an auth "
        "run was allowed by its token and none refused (a table flags a "
        "run where that was not so), and a server without auth checked "
        "none. The handshake part runs moor with `--accept-rate 0 "
        "--max-conns-per-ip 0 --handshake-rate-per-ip 0` (its default "
        "accept rate, 2,000 a second, and per-address handshake rate, 100 "
        "a second, would cap the rate); the broadcast part with the "
        "Broadcast section's flags."))
    out("Commands (`bench/run.sh --only auth --write` runs this part):\n\n"
        "```sh\n")
    out(commands + "\n```\n")


def checks_bc(mode, runs_auth, runs):
    """checks() for the broadcast runs: the subscribers and the publisher
    (and the warm-up's) were let through."""
    allowed = sum(x["allowed"] for x in runs_auth)
    denied = sum(x["denied"] for x in runs_auth)
    if mode == BASE:
        return "" if allowed == denied == 0 else \
            f" (**{allowed} tokens checked without auth?**)"
    need = sum(r.get("subscribers", 0) + 1 for r in runs)
    if denied:
        return f" (**{denied} tokens refused**)"
    if allowed < need:
        return f" (**{allowed} tokens checked for {need} connections**)"
    return ""


if __name__ == "__main__":
    main()
