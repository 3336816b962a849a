"""examples/ are built by `make` against the installed-style library and
work: echo_server echoes over WebSocket with Python's `websockets` client,
tells who left with which code, and exits 0 with no live bytes on SIGTERM
(after draining with close 1001)."""
import asyncio
import re
import signal
import subprocess
from pathlib import Path

import websockets

from conftest import REPO


def example(name):
    # The example beside the moor binary under test (release or debug
    # tree); examples are built in the release tree.
    return REPO / "build" / "release" / "examples" / name


def test_echo_server_example():
    exe = example("echo_server")
    assert exe.exists(), "make release builds examples/"
    p = subprocess.Popen([str(exe), "127.0.0.1:0"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        m = re.search(r"ws://127\.0\.0\.1:(\d+)/", line)
        assert m, line
        url = f"ws://127.0.0.1:{m.group(1)}/"

        async def go():
            async with websockets.connect(url) as ws:
                await ws.send("hello")
                assert await ws.recv() == "hello"
                await ws.send(b"\x00\x01" * 5000)
                assert await ws.recv() == b"\x00\x01" * 5000
                await ws.close(1000)
            # A second client that stays: the drain closes it with 1001.
            ws = await websockets.connect(url)
            p.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed as e:
                return e.code
            return None

        code = asyncio.run(asyncio.wait_for(go(), 20))
        assert code == 1001
        out, err = p.communicate(timeout=10)
        assert p.returncode == 0, err
        assert "left with code 1000" in out
        assert "left with code 1001" in out
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=5)
