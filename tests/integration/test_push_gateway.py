"""examples/push_gateway.c - the gateway of `moor serve` rebuilt from moor.h
alone - under the same pub/sub checks as `moor serve`.

The tests below are the ones of test_pubsub.py and test_sse_tcp.py that use
only what the example serves (GET /sub, GET and POST /pub, SSE, framed TCP,
/healthz, /metrics, /debug/mem, /debug/conns; no /echo): this module
imports those test functions and runs them with its own `moor` fixture,
which starts build/<release|debug>/examples/push_gateway (the tree of
MOOR_BIN) instead of `moor serve`. The example takes a subset of `moor
serve`'s flags under the same names and units; a test that passes any other
flag fails here (rather than silently testing something else). Teardown is
the same as for `moor serve`: SIGTERM, exit 0, no sanitizer report; the
example itself exits 1 if moor still holds a byte after shutdown.

Covered: WebSocket, SSE and POST publishing and subscribing, the slow
consumer policies over WebSocket and SSE (disconnect, drop-oldest, the soft
limit), publisher rate limits, channel limits, TCP framing, heartbeats,
shutdown of every stream kind, memory that comes back.
"""

import re
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import (HOST, SANITIZER_MARKS, Server, base_env, example_bin,
                      servers_of)
import test_pubsub as pubsub
import test_sse_tcp as sse_tcp

# The flags examples/push_gateway.c understands (its table, plus the
# string-valued ones it handles itself).
GATEWAY_FLAGS = {
    "--listen", "--tcp-listen", "--allowed-origins", "--slow-policy",
    "--max-conns", "--accept-rate", "--max-message", "--max-body",
    "--queue-limit", "--header-timeout", "--close-timeout",
    "--shutdown-timeout", "--max-channels", "--max-channels-per-conn",
    "--queue-soft-limit", "--queue-soft-time", "--rate", "--burst",
    "--sse-heartbeat", "--sse-retry",
}


def gateway_bin():
    return example_bin("push_gateway")


class Gateway(Server):
    """A Server (conftest) whose process is the example."""

    def __init__(self, args, env, workdir):  # not Server's: another command
        self.args = list(args)
        for a in self.args:
            if a.startswith("--") and a.split("=")[0] not in GATEWAY_FLAGS:
                pytest.fail(f"push_gateway has no flag {a} (wanted by this "
                            f"test: {self.args})", pytrace=False)
        self.workdir = Path(workdir)
        self.out_path = self.workdir / "stdout.txt"
        self.err_path = self.workdir / "stderr.txt"
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.cmd = [str(gateway_bin()), "--listen", f"{HOST}:0"] + self.args
        self.proc = subprocess.Popen(self.cmd, env=base_env(env),
                                     stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=self._err)
        self.port = None
        self.returncode = None
        self._wait_banner(10.0)


@pytest.fixture
def moor(tmp_path):
    """Like conftest's moor fixture, with push_gateway for `moor serve`."""
    yield from servers_of(Gateway, tmp_path, prefix="gw-")


@pytest.fixture
def server(moor):
    return moor()


# ---- the example on its own ---------------------------------------------------

def test_gateway_banner_healthz_and_clean_exit(moor):
    s = sse_tcp.start(moor)
    assert re.search(r"^push_gateway: http://127\.0\.0\.1:\d+ "
                     r"tcp://127\.0\.0\.1:\d+$", s.stdout_text(), re.M), \
        s.stdout_text()
    r = s.get("/healthz")
    assert r.status == 200 and r.body == b"ok\n", r
    assert s.get("/healthz", method="HEAD").status == 200
    assert s.get("/healthz", method="POST").status == 405
    assert s.get("/nothing-here").status == 404
    m = s.metrics()
    assert "moor_pubsub_subscribers" in m, sorted(m)[:20]
    assert "tags" in s.debug_mem()
    rc, err = s.stop(signal.SIGINT)
    sse_tcp.assert_clean_exit(rc, err, "push_gateway")


def test_gateway_bad_flags():
    for args in (["--no-such-flag", "1"], ["--queue-limit", "12parsecs"],
                 ["--slow-policy", "sometimes"], ["--listen"],
                 ["--listen", "nonsense"]):
        p = subprocess.run([str(gateway_bin())] + args, env=base_env(),
                           capture_output=True, text=True, timeout=10,
                           stdin=subprocess.DEVNULL)
        assert p.returncode in (1, 2), (args, p.returncode, p.stderr)
        assert p.stderr.startswith("push_gateway: ") or \
            p.stderr.startswith("usage: push_gateway"), (args, p.stderr)
        for mark in SANITIZER_MARKS:
            assert mark not in p.stderr, (args, p.stderr)


# ---- the checks of `moor serve`, against the example ---------------------------

# WebSocket and POST pub/sub, slow consumers, rate, limits, memory.
test_fanout_fast_get_all_slow_are_bounded = \
    pubsub.test_fanout_fast_get_all_slow_are_bounded
test_soft_limit_disconnects = pubsub.test_soft_limit_disconnects
test_publisher_held_to_rate_other_unaffected = \
    pubsub.test_publisher_held_to_rate_other_unaffected
test_subscribe_churn_leaves_nothing = pubsub.test_subscribe_churn_leaves_nothing
test_post_202_exact_count_and_delivery = \
    pubsub.test_post_202_exact_count_and_delivery
test_post_chunked_empty_and_connection_close = \
    pubsub.test_post_chunked_empty_and_connection_close
test_post_body_memory_follows_bytes_received = \
    pubsub.test_post_body_memory_follows_bytes_received
test_post_pipelined = pubsub.test_post_pipelined
test_post_400_bad_channel = pubsub.test_post_400_bad_channel
test_post_name_limits_and_nobody_listening = \
    pubsub.test_post_name_limits_and_nobody_listening
test_post_413 = pubsub.test_post_413
test_get_pub_without_upgrade_does_not_publish = \
    pubsub.test_get_pub_without_upgrade_does_not_publish
test_sub_400_before_upgrade = pubsub.test_sub_400_before_upgrade
test_sub_channel_limits = pubsub.test_sub_channel_limits
test_sub_several_channels_and_types = pubsub.test_sub_several_channels_and_types
test_burst_batched_counts_stay_exact = \
    pubsub.test_burst_batched_counts_stay_exact
test_node_ws_subscriber = pubsub.test_node_ws_subscriber

# Server-Sent Events.
test_sse_with_curl = sse_tcp.test_sse_with_curl
test_sse_cors_headers = sse_tcp.test_sse_cors_headers
test_sse_payload_bytes_exact = sse_tcp.test_sse_payload_bytes_exact
test_sse_several_channels_and_ids = sse_tcp.test_sse_several_channels_and_ids
test_sse_last_event_id = sse_tcp.test_sse_last_event_id
test_sse_heartbeat_when_quiet = sse_tcp.test_sse_heartbeat_when_quiet
test_sse_no_heartbeat_while_events_flow = \
    sse_tcp.test_sse_no_heartbeat_while_events_flow
test_sse_slow_consumer = sse_tcp.test_sse_slow_consumer
test_shutdown_closes_streams = sse_tcp.test_shutdown_closes_streams

# Framed TCP.
test_tcp_fanout_to_tcp_ws_sse = sse_tcp.test_tcp_fanout_to_tcp_ws_sse
test_tcp_lengths_0_1_max_and_over = sse_tcp.test_tcp_lengths_0_1_max_and_over
test_tcp_frames_one_byte_per_write = sse_tcp.test_tcp_frames_one_byte_per_write
test_tcp_truncated_frames = sse_tcp.test_tcp_truncated_frames
test_tcp_claimed_4gib_length = sse_tcp.test_tcp_claimed_4gib_length
test_tcp_partial_frame_memory_follows_bytes_received = \
    sse_tcp.test_tcp_partial_frame_memory_follows_bytes_received
test_tcp_command_errors = sse_tcp.test_tcp_command_errors
test_tcp_header_timeout = sse_tcp.test_tcp_header_timeout
test_tcp_heartbeat_when_quiet = sse_tcp.test_tcp_heartbeat_when_quiet
test_tcp_no_heartbeat_while_messages_flow = \
    sse_tcp.test_tcp_no_heartbeat_while_messages_flow
test_tcp_publisher_rate_limit = sse_tcp.test_tcp_publisher_rate_limit
test_debug_conns_rows = sse_tcp.test_debug_conns_rows
