#!/usr/bin/env node
// gc_echo.js - a WebSocket echo server on node's `ws` package that keeps
// nothing: a garbage-collected peer whose heap breathes (V8 collects when
// it chooses, not when a connection ends) but does not leak. `moor soak`
// must not call it a leak (tests/integration/test_soak.py).
//
// usage: NODE_PATH=tests/integration/node/node_modules \
//        node [--expose-gc] gc_echo.js [--gc-every MS]
//   Listens on 127.0.0.1, a free port, and prints "port N" on the first
//   line of stdout, nothing after. Every message is echoed with its type.
//   --gc-every (with --expose-gc): a full collection every MS, so the
//   heap's breathing has a period of seconds; left alone V8 collects its
//   old generation every few minutes under this load, longer than a
//   test can wait (docs/soak.md has the long runs of the bench peers).
//   A watchdog exits after 120 s, so a test cannot leave it behind.
'use strict';

const http = require('http');
const { WebSocketServer } = require('ws');

setTimeout(() => process.exit(1), 120000).unref();
const at = process.argv.indexOf('--gc-every');
if (at > 0 && typeof global.gc === 'function')
    setInterval(() => global.gc(), Number(process.argv[at + 1])).unref();

const server = http.createServer((req, res) => {
    res.writeHead(404);
    res.end();
});
const wss = new WebSocketServer({ server, maxPayload: 16 * 1024 * 1024 });
wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on('error', () => {});
});
server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`port ${server.address().port}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT'])
    process.on(sig, () => process.exit(0));
