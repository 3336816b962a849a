#!/usr/bin/env python3
"""A WebSocket echo server that leaks on purpose, for `moor soak`'s tests
(tests/integration/test_soak.py).

One thread, one selector, plain sockets: the RFC 6455 handshake, masked
frames in, unmasked frames out, ping answered, close answered; a request
without an upgrade gets a keep-alive "200 ok" (for http:// soaks). What it
keeps after a connection is gone depends on --leak:

  none   nothing (the control: soak must clear it)
  bytes  --leak-bytes of touched memory per connection, forever (only
         for the first --until connections, if given: a rise that then
         levels off)
  fd     an open file (/dev/null) every --every connections, forever
  slow   the echoes a connection never read (its unsent output) when it
         closes: only slow readers leak (the accepted sockets get a small
         SO_SNDBUF, so unsent output waits here and not in the kernel)

It prints "port N" on stdout once listening, and runs until killed.
"""

import argparse
import base64
import hashlib
import selectors
import socket
import struct
import sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

kept = []  # what the leak keeps (never freed)


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.inbuf = bytearray()
        self.out = bytearray()
        self.upgraded = False
        self.closing = False


def accept_key(key):
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def frame(opcode, payload):
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def parse_frames(c):
    """Yields (opcode, payload) of the complete frames in c.inbuf."""
    buf = c.inbuf
    while True:
        if len(buf) < 2:
            return
        b0, b1 = buf[0], buf[1]
        n = b1 & 0x7F
        off = 2
        if n == 126:
            if len(buf) < 4:
                return
            n = struct.unpack_from("!H", buf, 2)[0]
            off = 4
        elif n == 127:
            if len(buf) < 10:
                return
            n = struct.unpack_from("!Q", buf, 2)[0]
            off = 10
        masked = b1 & 0x80
        if masked:
            if len(buf) < off + 4:
                return
            key = bytes(buf[off:off + 4])
            off += 4
        if len(buf) < off + n:
            return
        payload = bytes(buf[off:off + n])
        if masked and key != b"\0\0\0\0":
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        del buf[:off + n]
        yield b0 & 0x0F, payload


class Server:
    def __init__(self, args):
        self.args = args
        self.sel = selectors.DefaultSelector()
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", args.port))
        self.lsock.listen(1024)
        self.lsock.setblocking(False)
        self.sel.register(self.lsock, selectors.EVENT_READ, None)
        self.accepted = 0

    def want(self, c):
        ev = selectors.EVENT_READ
        if c.out:
            ev |= selectors.EVENT_WRITE
        self.sel.modify(c.sock, ev, c)

    def drop(self, c):
        if self.args.leak == "slow" and c.out:
            kept.append(bytes(c.out))  # the unread echoes stay
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    def on_accept(self):
        try:
            s, _ = self.lsock.accept()
        except BlockingIOError:
            return
        s.setblocking(False)
        if self.args.leak == "slow":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        self.accepted += 1
        if self.args.leak == "bytes" and (not self.args.until or
                                          self.accepted <= self.args.until):
            kept.append(b"L" * self.args.leak_bytes)
        if self.args.leak == "fd" and self.accepted % self.args.every == 0:
            kept.append(open("/dev/null", "rb"))
        c = Conn(s)
        self.sel.register(s, selectors.EVENT_READ, c)

    def on_read(self, c):
        try:
            data = c.sock.recv(65536)
        except (ConnectionResetError, BlockingIOError):
            data = b"" if not isinstance(sys.exc_info()[1],
                                         BlockingIOError) else None
        if data is None:
            return
        if not data:
            self.drop(c)
            return
        c.inbuf += data
        while not c.upgraded and not c.closing:
            end = c.inbuf.find(b"\r\n\r\n")
            if end < 0:
                if len(c.inbuf) > 8192:
                    self.drop(c)
                    return
                break
            head = bytes(c.inbuf[:end]).decode("latin-1")
            del c.inbuf[:end + 4]
            key = None
            for line in head.split("\r\n")[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "sec-websocket-key":
                    key = v.strip().encode()
            if not key:
                # Plain HTTP/1.1 keep-alive: a small answer, then the next.
                c.out += b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
            else:
                c.out += (b"HTTP/1.1 101 Switching Protocols\r\n"
                          b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Accept: " + accept_key(key) +
                          b"\r\n\r\n")
                c.upgraded = True
        if not c.upgraded:
            self.flush(c)
            return
        for op, payload in parse_frames(c):
            if op in (1, 2):
                c.out += frame(op, payload)
            elif op == 9:
                c.out += frame(10, payload)
            elif op == 8:
                c.out += frame(8, payload[:2])
                c.closing = True
        self.flush(c)

    def flush(self, c):
        if c.out:
            try:
                n = c.sock.send(c.out)
                del c.out[:n]
            except BlockingIOError:
                pass
            except OSError:
                self.drop(c)
                return
        if c.closing and not c.out:
            self.drop(c)
            return
        self.want(c)

    def run(self):
        print(f"port {self.lsock.getsockname()[1]}", flush=True)
        while True:
            for key, ev in self.sel.select():
                if key.data is None:
                    self.on_accept()
                    continue
                c = key.data
                if c.sock.fileno() < 0:
                    continue
                if ev & selectors.EVENT_READ:
                    self.on_read(c)
                if c.sock.fileno() >= 0 and ev & selectors.EVENT_WRITE:
                    self.flush(c)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--leak", choices=("none", "bytes", "fd", "slow"),
                    default="none")
    ap.add_argument("--leak-bytes", type=int, default=32768)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--until", type=int, default=0)
    Server(ap.parse_args()).run()


if __name__ == "__main__":
    main()
