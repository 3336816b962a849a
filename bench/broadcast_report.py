#!/usr/bin/python3
"""bench/broadcast_report.py - the "## Broadcast" section of
docs/benchmarks.md, from the JSON that `moor bench broadcast --json` wrote
during bench/run.sh.

Reads, in --dir: NAME.tput1.json ... NAME.tputR.json (throughput runs),
NAME.lat1.json ... NAME.latR.json (fixed-rate latency runs),
NAME.win-K.json for every K of --sweep (one throughput run per window)
and NAME.cmd for every NAME in --servers, and `commands`. Writes Markdown
to stdout: the throughput table with ratios against libwebsockets (lws),
the latency table, the window sweep, whether every run was valid (nothing
lost, duplicated or out of order), the two goals of the issue and whether
this run met them, the method and the commands. Of the runs of one server, the median is shown
(throughput: by deliveries/s; latency: by p99), and every run is listed.

Only the standard library (and ws_report.py's helpers, beside it).
"""
import argparse
import json
import os
import sys

from ws_report import (BASE, busy_note, failures, load, median_by, para,
                       ratio, thousands, us)

GOAL_RATIO = 40.0
GOAL_P99_US = 20000.0


def p99(d):
    return d["latency_us"]["p99"]


def invalid(d):
    """'' for a clean run, else what went wrong, in a few words."""
    bad = [f"{d[k]} {w}" for k, w in (("lost", "lost"),
                                       ("duplicated", "duplicated"),
                                       ("out_of_order", "out of order"),
                                       ("malformed", "malformed"),
                                       ("dropped", "sends dropped"))
           if d.get(k)]
    if d.get("exit") and not bad:
        bad.append(f"exit {d['exit']}")
    return ", ".join(bad)


def cpu(v):
    return "-" if v is None else f"{v:.0f}%"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--servers", required=True, help="space-separated")
    ap.add_argument("--versions", required=True, help="|-separated, "
                    "in --servers order")
    ap.add_argument("--date", required=True)
    ap.add_argument("--cpu", required=True)
    ap.add_argument("--moor-flags", required=True)
    ap.add_argument("--runs", type=int, required=True)
    ap.add_argument("--sweep", default="", help="space-separated windows")
    a = ap.parse_args()

    names = a.servers.split()
    label = dict(zip(names, a.versions.split("|")))
    sweep = [int(k) for k in a.sweep.split()]
    tput_runs, lat_runs, tput, lat, win = {}, {}, {}, {}, {}
    for n in names:
        win[n] = {k: load(os.path.join(a.dir, f"{n}.win-{k}.json"))
                  for k in sweep}
        tput_runs[n] = [load(os.path.join(a.dir, f"{n}.tput{i}.json"))
                        for i in range(1, a.runs + 1)]
        lat_runs[n] = [load(os.path.join(a.dir, f"{n}.lat{i}.json"))
                       for i in range(1, a.runs + 1)]
        tput[n] = median_by(tput_runs[n], lambda d: d["deliveries_per_s"])
        lat[n] = median_by(lat_runs[n], p99)
    with open(os.path.join(a.dir, "commands")) as f:
        commands = f.read().rstrip("\n")

    out = sys.stdout.write
    t0, l0 = tput[names[0]], lat[names[0]]
    subs = t0["conns"]
    base = tput.get(BASE, {}).get("deliveries_per_s")

    out("## Broadcast\n\n")
    out(para(f"Measured {a.date} on {a.cpu}. One server at a time, pinned "
             "to core 0; `moor bench broadcast` (moor's own WebSocket "
             "client, one thread) pinned to core 1. "
             f"{subs:,} subscribers on one channel, one publisher, "
             f"{t0['size']} B messages. Ratios are against libwebsockets "
             "in the same run."))

    out(para(f"Throughput: at most {t0['inflight']} messages published "
             "and not yet received by every subscriber; "
             f"{t0['duration_s']:.0f} s after {t0['warmup_s']:.0f} s of "
             f"warm-up; median of {a.runs} runs, each on a fresh server. "
             "Deliveries/s: messages received by all subscribers "
             "together, per second. Latency: from the publish to each "
             "delivery, queueing in the window included."))
    out("| server | deliveries/s | vs lws | published/s | p50 | p99 "
        "| server CPU | bench CPU | every run (deliveries/s) |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
    for n in names:
        d = tput[n]
        every = ", ".join(thousands(r["deliveries_per_s"])
                          for r in tput_runs[n])
        out(f"| {label[n]} | {thousands(d['deliveries_per_s'])} | "
            f"{ratio(d['deliveries_per_s'], base)} | "
            f"{thousands(d['published_per_s'])} | "
            f"{us(d['latency_us']['p50'])} | {us(p99(d))} | "
            f"{cpu(d['server_cpu_pct'])} | {cpu(d['bench_cpu_pct'])} | "
            f"{every}{failures(d)} |\n")

    out(busy_note([label[n] for n in names
                   if tput[n]["bench_cpu_pct"] >= 90], "deliveries/s"))

    out("\n" + para(f"Latency: {l0['rate']} messages/s for "
                    f"{l0['duration_s']:.0f} s after {l0['warmup_s']:.0f} s "
                    f"({l0['rate'] * subs:,} deliveries/s); every "
                    "delivery's publish-to-receive time; median of "
                    f"{a.runs} runs by p99."))
    out("| server | p50 | p99 | p999 | max | server CPU "
        "| every run (p99) |\n|---|---:|---:|---:|---:|---:|---|\n")
    for n in names:
        d = lat[n]
        lu = d["latency_us"]
        every = ", ".join(us(p99(r)) for r in lat_runs[n])
        out(f"| {label[n]} | {us(lu['p50'])} | {us(lu['p99'])} | "
            f"{us(lu['p999'])} | {us(lu['max'])} | "
            f"{cpu(d['server_cpu_pct'])} | {every}{failures(d)} |\n")

    if sweep:
        out("\n" + para("The window: deliveries/s with at most K messages "
                        "in flight, one run of each (the same length as "
                        "above) on a fresh server."))
        out("| server | " + " | ".join(f"K = {k}" for k in sweep) +
            " |\n|---|" + "---:|" * len(sweep) + "\n")
        for n in names:
            cells = []
            for k in sweep:
                d = win[n][k]
                why = invalid(d)
                cells.append(thousands(d["deliveries_per_s"]) +
                             (f" ({why})" if why else ""))
            out(f"| {label[n]} | " + " | ".join(cells) + " |\n")

    bad = []
    for n in names:
        for kind, runs in (("throughput", tput_runs[n]),
                           ("latency", lat_runs[n]),
                           ("window", list(win[n].values()))):
            for i, r in enumerate(runs, 1):
                why = invalid(r)
                if why:
                    bad.append(f"{label[n]} {kind} run {i}: {why}")
    out("\n")
    if bad:
        out(para("**Not every run was valid** (" + "; ".join(bad) + "): "
                 "its figures do not count."))
    else:
        out(para("Every run was valid: no message lost, duplicated, out "
                 "of order or malformed at any subscriber."))

    if "moor" in names and BASE in names:
        r = tput["moor"]["deliveries_per_s"] / base if base else 0
        mp99 = p99(lat["moor"])

        def met(ok):
            return "met" if ok else "**not met**"

        out("Goals:\n\n")
        out(f"- deliveries/s at least {GOAL_RATIO:.0f}x libwebsockets': "
            f"{r:.1f}x, {met(r >= GOAL_RATIO)}\n")
        out(f"- p99 below {GOAL_P99_US / 1000:.0f} ms at "
            f"{lat['moor']['rate']} messages/s: {us(mp99)}, "
            f"{met(mp99 < GOAL_P99_US)}\n\n")

    out(para(
        "Method. `moor bench broadcast` opens the publisher and one "
        "warm-up subscriber and publishes until the subscriber has a "
        "message (so both URLs are known to work and once-only code has "
        "run), closes the subscriber, opens the subscribers (bound "
        "round-robin to 127.0.0.2 onward), and publishes a probe every "
        "100 ms until every subscriber has received one: a server may add "
        "a subscriber to its list a moment after the handshake, and from "
        "then on every subscriber must receive every message. Each message "
        "carries its sequence number and its send time (CLOCK_MONOTONIC, "
        "the same clock as the receiver's: one process). Throughput runs "
        f"keep at most {t0['inflight']} messages published and not yet "
        "received by every subscriber: the next is published as soon as "
        "the slowest subscriber has the oldest. That bounds what any "
        f"server holds for one subscriber to {t0['inflight']} messages "
        f"(about {t0['inflight'] * (t0['size'] + 2) // 1024} KiB), "
        "whatever order it writes its subscribers in, far from every "
        "slow-consumer limit (the peers' 8 MiB, moor's 1 MiB hard and "
        "256 KiB soft), so the run measures fan-out and never queueing "
        "or a disconnect policy. A window counted at the first subscriber "
        "instead would depend on the server's write order (lws lists its "
        "subscribers newest first, Go's map has no order) and would let "
        "the last subscribers' queues grow without bound. Every server "
        "gets the same window; the window table shows how each responds "
        "to its size (the peers write one message per system call "
        "whatever is queued; moor frames the messages that arrive in one "
        "loop iteration for a channel back to back into one shared "
        "message, so each subscriber gets the run with one reference and "
        "one sendmsg; docs/pubsub.md, Fan-out). With that, at K = 64 the "
        "one-threaded bench client is busier than moor (the CPU "
        "columns), so moor's figure is a lower bound. "
        "Latency runs publish on a fixed schedule instead. After the "
        "measured window, publishing stops and the bench waits (5 s at "
        "most) for every subscriber to have every message; each "
        "subscriber checks its sequence numbers, and a message lost, "
        "duplicated, out of order or of the wrong size makes the run "
        "invalid (exit 1). CPU is the share of one core each process "
        "used in the window, kernel time included."))
    out(para(f"moor runs with `{a.moor_flags}`: the subscribers are "
             "accepted as fast as they connect, and the publisher is not "
             "rate limited (its default, 10,000 messages/s, is above what "
             "any run here publishes; the figures should not depend on "
             "it). Its queue limits are the defaults. The peers run as in "
             "bench/peers (README there), with no flags."))
    out("Commands (`make bench` runs `bench/run.sh`; `bench/run.sh --only "
        "broadcast --write`\nruns this part alone):\n\n```sh\n")
    out(commands + "\n```\n")


if __name__ == "__main__":
    main()
