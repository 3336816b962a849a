#!/usr/bin/python3
"""bench/tls_report.py - the "## TLS" section of docs/benchmarks.md, from
what bench/run.sh --only tls left in its directory.

Reads, in --dir, for every NAME in --servers: NAME.idle.json (`moor bench
idle --json` over wss://), NAME.hs1.json ... NAME.hsR.json (`moor bench
handshake --json`) and NAME.cmd; for moor besides: moor.mem.before.json
and moor.mem.open.json (its /debug/mem before the connections and once
they were all open) with moor.mem.conns (the TLS connections open then),
the same as moor.trace.* from the run with --mem-trace (/debug/mem then
carries every live allocation's call site), and moor-trace.cmd; and
`commands`. Writes Markdown to stdout: the idle table with ratios against
libwebsockets (lws), moor's own accounting per connection, the tls tag by
OpenSSL call site (top ten), the handshake table (the median run of each
server by handshakes/s, every run listed), the goal of the issue, the
method and the commands.

Only the standard library (and ws_report.py's helpers, beside it).
"""
import argparse
import json
import os
import sys

from ws_report import (BASE, busy_note, failures, load, median_by, para,
                       ratio, thousands, us)

GOAL_IDLE_BYTES = 14300
TOP_SITES = 10


def cpu(v):
    return "-" if v is None else f"{v:.0f}%"


def read_int(path):
    with open(path) as f:
        return int(f.read().strip() or 0)


def tag_growth(before, after, tag):
    """Live bytes of one tag (or of all, tag None) gained between two
    /debug/mem documents."""
    if tag is None:
        return after["live_bytes"] - before["live_bytes"]
    return after["tags"][tag]["live_bytes"] - before["tags"][tag]["live_bytes"]


def site_growth(before, after, tag):
    """[(site, bytes gained, allocations gained)] of one tag's call sites,
    most bytes first, from two /debug/mem documents with traces."""
    def by_site(doc):
        return {t["site"]: (t["bytes"], t["count"])
                for t in doc.get("trace") or [] if t["tag"] == tag}
    b, a = by_site(before), by_site(after)
    rows = []
    for site in set(a) | set(b):
        ab, ac = a.get(site, (0, 0))
        bb, bc = b.get(site, (0, 0))
        if ab != bb or ac != bc:
            rows.append((site, ab - bb, ac - bc))
    rows.sort(key=lambda r: (-r[1], r[0]))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--servers", required=True, help="space-separated")
    ap.add_argument("--versions", required=True, help="|-separated, "
                    "in --servers order")
    ap.add_argument("--date", required=True)
    ap.add_argument("--cpu", required=True)
    ap.add_argument("--conns", type=int, required=True)
    ap.add_argument("--runs", type=int, required=True)
    ap.add_argument("--openssl", required=True,
                    help="the OpenSSL version moor and lws use")
    a = ap.parse_args()

    d = a.dir
    names = a.servers.split()
    label = dict(zip(names, a.versions.split("|")))
    idle, runs, hs = {}, {}, {}
    for n in names:
        idle[n] = load(os.path.join(d, f"{n}.idle.json"))
        runs[n] = [load(os.path.join(d, f"{n}.hs{i}.json"))
                   for i in range(1, a.runs + 1)]
        hs[n] = median_by(runs[n], lambda r: r["handshakes_per_s"])
    with open(os.path.join(d, "commands")) as f:
        commands = f.read().rstrip("\n")

    out = sys.stdout.write
    base_idle = idle.get(BASE, {}).get("bytes_per_conn")
    base_hs = hs.get(BASE, {}).get("handshakes_per_s")
    hold = idle[names[0]]["hold_s"]
    h0 = hs[names[0]]

    out("## TLS\n\n")
    out(para(f"Measured {a.date} on {a.cpu}. One server at a time, pinned "
             "to core 0; `moor bench` (moor's own WebSocket client, one "
             "thread, OpenSSL) pinned to core 1. Every server serves wss:// "
             "with the same P-256 (ECDSA) certificate for 127.0.0.1, made "
             "for the run by a CA the bench trusts (`--tls-ca`), through its "
             "own TLS stack at its defaults: moor through src/tls.c on "
             f"OpenSSL {a.openssl}, libwebsockets on the same OpenSSL, node "
             "on its tls module, gorilla on Go's crypto/tls. Ratios are "
             "against libwebsockets in the same run."))

    out(para(f"Idle: {a.conns:,} wss connections to `/echo`, held "
             f"{hold:.0f} s."))
    out("| server | bytes/conn (VmRSS) | vs lws | Pss/conn | Private/conn "
        "| open in |\n|---|---:|---:|---:|---:|---:|\n")
    for n in names:
        r = idle[n]
        out(f"| {label[n]} | {r['bytes_per_conn']} | "
            f"{ratio(r['bytes_per_conn'], base_idle)} | "
            f"{r['pss_per_conn']} | {r['private_per_conn']} | "
            f"{r['open_s']:.2f} s{failures(r)} |\n")

    acc = tls = conns = None
    if "moor" in names:
        before = load(os.path.join(d, "moor.mem.before.json"))
        after = load(os.path.join(d, "moor.mem.open.json"))
        conns = read_int(os.path.join(d, "moor.mem.conns"))
        if conns:
            tls = tag_growth(before, after, "tls") // conns
            acc = tag_growth(before, after, None) // conns
            out("\n" + para(
                f"moor's own accounting, from /debug/mem before the "
                f"connections and with {conns:,} of them open: the `tls` tag "
                f"(OpenSSL's allocations, through moor's allocator) grew by "
                f"{tls:,} B per connection, all tags together by {acc:,} B "
                f"(the rest is moor's connection itself). VmRSS grew by "
                f"{idle['moor']['bytes_per_conn']:,} B: what the allocator "
                "takes from the system for those bytes (headers, size "
                "classes, fragmentation)").rstrip("\n") + ".\n")

        tb = load(os.path.join(d, "moor.trace.before.json"))
        ta = load(os.path.join(d, "moor.trace.open.json"))
        tconns = read_int(os.path.join(d, "moor.trace.conns"))
        rows = site_growth(tb, ta, "tls")
        if tconns and rows:
            total_b = sum(r[1] for r in rows)
            total_c = sum(r[2] for r in rows)
            out("\n" + para(
                f"The `tls` tag by OpenSSL call site (`moor serve "
                f"--mem-trace`, a second run, the same way, {tconns:,} "
                f"connections open): the growth of each site's live bytes "
                f"and allocations divided by the connections, the "
                f"{TOP_SITES} largest."))
            out("| OpenSSL call site | bytes/conn | allocations/conn |\n"
                "|---|---:|---:|\n")
            for site, b, c in rows[:TOP_SITES]:
                out(f"| `{site}` | {b / tconns:,.0f} | {c / tconns:.2f} |\n")
            rest = rows[TOP_SITES:]
            if rest:
                out(f"| {len(rest)} other sites | "
                    f"{sum(r[1] for r in rest) / tconns:,.0f} | "
                    f"{sum(r[2] for r in rest) / tconns:.2f} |\n")
            out(f"| total | {total_b / tconns:,.0f} | "
                f"{total_c / tconns:.2f} |\n")

    out("\n" + para(
        f"Handshakes: {h0['conns']} connections at a time, each closed "
        "outright as soon as its TLS and WebSocket handshakes are done "
        "(the 101 checked) and replaced by a new one; "
        f"{h0['duration_s']:.0f} s after {h0['warmup_s']:.0f} s of warm-up; "
        f"median of {a.runs} runs, each on a fresh server. Time: from the "
        "connect call to the 101, TCP and TLS and the upgrade."))
    out("| server | handshakes/s | vs lws | p50 | p99 | p999 | server CPU "
        "| bench CPU | every run (handshakes/s) |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
    for n in names:
        r = hs[n]
        lat = r["latency_us"]
        every = ", ".join(thousands(x["handshakes_per_s"]) for x in runs[n])
        out(f"| {label[n]} | {thousands(r['handshakes_per_s'])} | "
            f"{ratio(r['handshakes_per_s'], base_hs)} | {us(lat['p50'])} | "
            f"{us(lat['p99'])} | {us(lat['p999'])} | "
            f"{cpu(r['server_cpu_pct'])} | {r['bench_cpu_pct']:.0f}% | "
            f"{every}{failures(r)} |\n")
    busy = [label[n] for n in names if hs[n]["bench_cpu_pct"] >= 90]
    out(busy_note(busy, "handshakes/s"))
    if busy:
        # The client holds the rate down: compare what each handshake
        # cost the server instead (its CPU time per handshake, and the
        # rate one core of it would sustain at that cost).
        cost = {n: hs[n]["server_cpu_pct"] / 100.0 / hs[n]["handshakes_per_s"]
                for n in names if hs[n]["server_cpu_pct"]
                and hs[n]["handshakes_per_s"]}
        if cost:
            base_cost = cost.get(BASE)
            parts = []
            for n in names:
                if n not in cost:
                    continue
                t = f"{label[n]} {cost[n] * 1e6:.0f} us " \
                    f"({thousands(1.0 / cost[n])}/s per core"
                if base_cost and n != BASE:
                    t += f", {base_cost / cost[n]:.2f}x lws"
                parts.append(t + ")")
            out("\n" + para(
                "Server CPU time per handshake (server CPU over "
                "handshakes/s), and the rate one core would sustain at "
                "that cost: " + "; ".join(parts) + ".").rstrip("\n") + "\n")

    if "moor" in names:
        b = idle["moor"]["bytes_per_conn"]

        def met(ok):
            return "met" if ok else "**not met**"

        out("\nGoal:\n\n")
        out(f"- under {GOAL_IDLE_BYTES:,} B per idle TLS connection in "
            f"total: {b:,} B (VmRSS), {met(b < GOAL_IDLE_BYTES)}"
            + (f"; moor's accounting {acc:,} B, of which tls {tls:,} B"
               if acc is not None else "") + "\n")

    out("\n" + para(
        "Method. As in the WebSocket section, `moor bench idle` opens a "
        "warm-up connection, echoes one message and closes it, reads the "
        "server's memory, opens the connections (bound round-robin to "
        "127.0.0.2 onward), holds them, reads again and divides the growth "
        "by the connections open. Before it, one second of `moor bench "
        "handshake` (4 at a time) warms every server's TLS up, so what a "
        "stack builds on its first handshakes (OpenSSL's algorithm and "
        "provider caches, a runtime's tables) is not counted per "
        "connection. moor's /debug/mem is read after that warm-up and "
        "again once its TLS connection gauge has reached the count and a "
        "second has passed. The trace run is separate because tracing "
        "costs memory of its own (not counted in the tags, but in VmRSS). "
        "Handshakes: the bench verifies each server's certificate, sends "
        "no session ticket back (every handshake is a full one) and does "
        "not send a close_notify-and-wait or a WebSocket close: it "
        "closes the connection. What each server sends after its "
        "handshake is its own choice: the peers' stacks issue TLS 1.3 "
        "session tickets by default (OpenSSL two, Go one), moor none "
        "(`--tls-tickets` off)."))
    if "moor" in names:
        out(para(f"moor runs with `--accept-rate 0 --max-conns-per-ip 0 "
                 f"--handshake-rate-per-ip 0 --max-conns {a.conns + 1000}` "
                 "(its default accept rate, 2,000 a second, would cap the "
                 "handshake rate, and every client comes from one "
                 "address), the peers with only their certificate and "
                 "key."))
    out("Commands (`bench/run.sh --only tls --write` runs this part):\n\n"
        "```sh\n")
    out(commands + "\n```\n")


if __name__ == "__main__":
    main()
