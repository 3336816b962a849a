#!/usr/bin/python3
"""bench/ws_report.py - the "## WebSocket" section of docs/benchmarks.md,
from the JSON that `moor bench --json` wrote during bench/run.sh.

Reads, in --dir: NAME.idle.json, NAME.echo1.json ... NAME.echoR.json and
NAME.cmd for every NAME in --servers, and `commands`. Writes Markdown to
stdout: the idle and echo tables with ratios against libwebsockets (lws),
the three goals of the issue and whether this run met them, the method
and the commands. Of the echo runs of one server, the median by
messages/s is shown, and every run's messages/s is listed.

Only the standard library.
"""
import argparse
import json
import os
import sys
import textwrap

BASE = "lws"
GOAL_IDLE_BYTES = 128
GOAL_ECHO_RATIO = 10.0
GOAL_P99_US = 5000.0


def load(path):
    with open(path) as f:
        return json.load(f)


def thousands(v):
    return f"{v:,.0f}"


def us(v):
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.0f} us"


def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "n/a"


def failures(d):
    """' (3 failed: connection refused: 3)' or ''."""
    parts = []
    if d.get("failed"):
        why = ", ".join(f"{k}: {v}" for k, v in d["failures"].items())
        parts.append(f"{d['failed']} failed: {why}")
    if d.get("closed_early"):
        why = ", ".join(f"{k}: {v}"
                        for k, v in d["closed_early_reasons"].items())
        parts.append(f"{d['closed_early']} closed early: {why}")
    if d.get("error"):
        parts.append(d["error"])
    return f" ({'; '.join(parts)})" if parts else ""


def para(text):
    """One paragraph, wrapped at 76 columns, and a blank line."""
    return textwrap.fill(" ".join(text.split()), width=76,
                         break_on_hyphens=False) + "\n\n"


def busy_note(busy, what):
    """The paragraph under a table whose bench client ran at 90 % of a
    core or more for the servers labelled in busy (what: the table's
    rate, "messages/s"); "" if none did."""
    if not busy:
        return ""
    return "\n" + para(f"Bench CPU of 90 % or more ({', '.join(busy)}): "
                       "the client was as busy as the server, so it may "
                       f"have held the rate down; read that {what} as a "
                       "lower bound for the server.").rstrip("\n") + "\n"


def median_by(runs, key):
    """The run whose key is the median (the lower middle one for an even
    count). broadcast_report.py and tls_report.py use it too."""
    ranked = sorted(runs, key=key)
    return ranked[(len(ranked) - 1) // 2]


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
    a = ap.parse_args()

    names = a.servers.split()
    label = dict(zip(names, a.versions.split("|")))
    idle, echo, runs = {}, {}, {}
    for n in names:
        idle[n] = load(os.path.join(a.dir, f"{n}.idle.json"))
        runs[n] = [load(os.path.join(a.dir, f"{n}.echo{i}.json"))
                   for i in range(1, a.runs + 1)]
        echo[n] = median_by(runs[n], lambda d: d["msgs_per_s"])
    with open(os.path.join(a.dir, "commands")) as f:
        commands = f.read().rstrip("\n")

    out = sys.stdout.write
    base_idle = idle.get(BASE, {}).get("bytes_per_conn")
    base_echo = echo.get(BASE, {}).get("msgs_per_s")
    hold = idle[names[0]]["hold_s"]
    e0 = echo[names[0]]

    out("## WebSocket\n\n")
    out(para(f"Measured {a.date} on {a.cpu}. One server at a time, pinned "
             "to core 0; `moor bench` (moor's own WebSocket client, one "
             "thread) pinned to core 1. Ratios are against libwebsockets in "
             "the same run."))

    out(para(f"Idle: {a.conns:,} connections to `/echo`, held {hold:.0f} "
             "s."))
    out("| server | bytes/conn (VmRSS) | vs lws | Pss/conn | Private/conn "
        "| open in |\n|---|---:|---:|---:|---:|---:|\n")
    for n in names:
        d = idle[n]
        out(f"| {label[n]} | {d['bytes_per_conn']} | "
            f"{ratio(d['bytes_per_conn'], base_idle)} | "
            f"{d['pss_per_conn']} | {d['private_per_conn']} | "
            f"{d['open_s']:.2f} s{failures(d)} |\n")

    out("\n" + para(f"Echo: {e0['conns']} connections x {e0['inflight']} "
                    f"messages in flight x {e0['size']} B, "
                    f"{e0['duration_s']:.0f} s after {e0['warmup_s']:.0f} s "
                    f"of warm-up; median of {a.runs} runs."))
    out("| server | messages/s | vs lws | p50 | p99 | p999 | server CPU "
        "| bench CPU | every run (messages/s) |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
    for n in names:
        d = echo[n]
        lat = d["latency_us"]
        srv = d["server_cpu_pct"]
        every = ", ".join(thousands(r["msgs_per_s"]) for r in runs[n])
        out(f"| {label[n]} | {thousands(d['msgs_per_s'])} | "
            f"{ratio(d['msgs_per_s'], base_echo)} | {us(lat['p50'])} | "
            f"{us(lat['p99'])} | {us(lat['p999'])} | "
            f"{'-' if srv is None else f'{srv:.0f}%'} | "
            f"{d['bench_cpu_pct']:.0f}% | {every}{failures(d)} |\n")

    out(busy_note([label[n] for n in names
                   if echo[n]["bench_cpu_pct"] >= 90], "messages/s"))

    if "moor" in names and BASE in names:
        mi, me = idle["moor"], echo["moor"]
        r = me["msgs_per_s"] / base_echo if base_echo else 0
        p99 = me["latency_us"]["p99"]

        def met(ok):
            return "met" if ok else "**not met**"

        out("\nGoals:\n\n")
        out(f"- idle memory at most {GOAL_IDLE_BYTES} bytes per connection: "
            f"{mi['bytes_per_conn']} B, "
            f"{met(mi['bytes_per_conn'] <= GOAL_IDLE_BYTES)}\n")
        out(f"- echo messages/s at least {GOAL_ECHO_RATIO:.0f}x "
            f"libwebsockets': {r:.1f}x, {met(r >= GOAL_ECHO_RATIO)}\n")
        out(f"- p99 latency below {GOAL_P99_US / 1000:.0f} ms: {us(p99)}, "
            f"{met(p99 < GOAL_P99_US)}\n")

    out("\nMethod. Idle: `moor bench idle` opens a warm-up connection, "
        "echoes one\nmessage on it and closes it (so code run once, "
        "such as the handshake's\nSHA-1, is faulted in first), reads the "
        "server's VmRSS from\n/proc/PID/status and Pss and Private from "
        "/proc/PID/smaps_rollup, opens\nthe connections (bound "
        "round-robin to 127.0.0.2 onward, so ephemeral ports\nnever run "
        "out), holds them, reads again, and divides the growth by the\n"
        "connections open. Echo: `moor bench echo` keeps every "
        "connection's 16\nmessages in flight, sending the next one as each "
        "comes back; messages/s\ncounts the echoes received in the "
        "measured window, and latency is each\nmessage's round trip "
        "(CLOCK_MONOTONIC, from the send call to the echo),\nin a "
        "log-bucket histogram (at most 0.8 % above the true value). CPU is "
        "the\nshare of one core each process used in the window (kernel time "
        "included:\na peer that writes one TCP segment per message makes "
        "the reader's receive\npath cost as much as its own). Each echo "
        "run starts a fresh server. On this\nvirtual machine one run's "
        "messages/s can differ from the next by up to 2x:\nin the slow "
        "runs both processes sit in epoll_wait for milliseconds at a\n"
        "time with messages in flight (the same with cubic as with bbr), "
        "hence the\nmedian of several runs.\n\n")
    out("Commands (`make bench` runs `bench/run.sh`; `bench/run.sh --only ws "
        "--write`\nruns this part alone):\n\n```sh\n")
    out(commands + "\n```\n")


if __name__ == "__main__":
    main()
