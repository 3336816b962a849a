"""WebSocket interop of GET /echo with two independent clients: Python
`websockets` (Debian's python3-websockets; 10.4 has no sync client, so
its asyncio API) and node's `ws` package (tests/integration/node).

Nothing here is skipped: a missing client is a failure that says to run
`make deps`.
"""

import asyncio
import os
import subprocess

import pytest

from conftest import NODE_DIR, DEPS_HINT, node_bin


try:
    import websockets
    import websockets.exceptions
except ImportError:      # pragma: no cover - reported by the tests
    websockets = None

MiB = 1 << 20


def need_websockets():
    if websockets is None:
        pytest.fail(f"Python module websockets is missing: {DEPS_HINT} "
                    f"(Debian package python3-websockets)", pytrace=False)


def ws_url(server, path="/echo"):
    return f"ws://127.0.0.1:{server.port}{path}"


def run(coro, timeout=30):
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


def connect(server, **kw):
    kw.setdefault("max_size", 32 * MiB)
    kw.setdefault("open_timeout", 5)
    kw.setdefault("close_timeout", 5)
    kw.setdefault("ping_interval", None)
    return websockets.connect(ws_url(server), **kw)


def text_of(n):
    unit = "moor κόσμε € 𝄞 "
    s = unit * (n // len(unit.encode()) + 1)
    b = s.encode()[:n]
    while True:
        try:
            return b.decode() + "x" * (n - len(b))
        except UnicodeDecodeError:
            b = b[:-1]


def test_websockets_text_and_binary(server):
    need_websockets()

    async def go():
        async with connect(server) as ws:
            for msg in ["", "hello", "héllo wörld € 𝄞", text_of(125),
                        text_of(126), text_of(65536)]:
                await ws.send(msg)
                got = await ws.recv()
                assert isinstance(got, str), type(got)
                assert got == msg
            for n in [0, 1, 125, 126, 127, 65535, 65536]:
                msg = os.urandom(n)
                await ws.send(msg)
                got = await ws.recv()
                assert isinstance(got, bytes), type(got)
                assert got == msg
            await ws.close(1000, "bye")
            assert ws.close_code == 1000, ws.close_code
    run(go())


def test_websockets_fragmented(server):
    """websockets sends an iterable as one fragmented message; the echo is
    one message."""
    need_websockets()

    async def go():
        async with connect(server) as ws:
            await ws.send(["frag", "mented ", "κόσμε", ""])
            assert await ws.recv() == "fragmented κόσμε"
            parts = [os.urandom(1000) for _ in range(20)]
            await ws.send(parts)
            assert await ws.recv() == b"".join(parts)
            await ws.close()
            assert ws.close_code == 1000
    run(go())


@pytest.mark.wall(120)
def test_websockets_large(server):
    need_websockets()

    async def go():
        async with connect(server) as ws:
            big = os.urandom(16 * MiB)
            await ws.send(big)
            assert await ws.recv() == big
            text = text_of(4 * MiB)
            await ws.send(text)
            assert await ws.recv() == text
            await ws.close()
            assert ws.close_code == 1000
    run(go(), timeout=90)


def test_websockets_ping_and_pipelined(server):
    need_websockets()

    async def go():
        async with connect(server) as ws:
            waiter = await ws.ping(b"py-ping")
            await asyncio.wait_for(waiter, 5)
            msgs = [f"m{i}" * (i % 50) for i in range(500)]
            for m in msgs:
                await ws.send(m)
            for m in msgs:
                assert await ws.recv() == m
            await ws.close(4000, "app code")
            assert ws.close_code == 4000, ws.close_code
    run(go())


def test_websockets_subprotocol_and_deflate_declined(server):
    """The client offers a subprotocol and permessage-deflate; /echo takes
    neither, and the connection works."""
    need_websockets()

    async def go():
        async with connect(server, subprotocols=["chat"],
                           compression="deflate") as ws:
            assert ws.subprotocol is None
            assert not ws.extensions, ws.extensions
            await ws.send("plain")
            assert await ws.recv() == "plain"
            await ws.close()
    run(go())


def test_websockets_many_concurrent(server):
    need_websockets()

    async def one(i):
        async with connect(server) as ws:
            for j in range(20):
                msg = f"client {i} msg {j}"
                await ws.send(msg)
                assert await ws.recv() == msg
            await ws.close()
            return ws.close_code

    async def go():
        codes = await asyncio.gather(*(one(i) for i in range(50)))
        assert set(codes) == {1000}, codes
    run(go())


def test_websockets_sees_protocol_error_close(server):
    """websockets never breaks the protocol itself, so the test forges an
    unmasked frame under it; the client must see moor's close 1002."""
    need_websockets()

    async def go():
        async with connect(server) as ws:
            ws.transport.write(b"\x81\x02hi")     # unmasked text
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1002, ws.close_code
    run(go())


# ---- node `ws` -------------------------------------------------------------

@pytest.mark.parametrize("rounds", [1, 3])
def test_node_ws_echo(server, rounds):
    node = node_bin()
    r = subprocess.run([node, str(NODE_DIR / "ws_echo_client.js"),
                        ws_url(server), str(rounds)],
                       cwd=NODE_DIR, capture_output=True, text=True,
                       timeout=45)
    assert r.returncode == 0, \
        f"node ws client exited {r.returncode}\nstdout: {r.stdout}\n" \
        f"stderr: {r.stderr}"
    assert '"ok":true' in r.stdout, r.stdout


def test_node_ws_concurrent(server):
    node = node_bin()
    procs = [subprocess.Popen([node, str(NODE_DIR / "ws_echo_client.js"),
                               ws_url(server), "1"], cwd=NODE_DIR,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(8)]
    failures = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=45)
            if p.returncode != 0:
                failures.append(f"exit {p.returncode}: {err.strip()}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    assert not failures, "\n".join(failures)
