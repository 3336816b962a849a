#!/usr/bin/env node
// ws_echo_server.js - a WebSocket echo server on the `ws` package: the
// independent peer for tests of moor's WebSocket client.
//
// usage: node ws_echo_server.js [PATH]
//   Listens on 127.0.0.1, port 0 (only PATH, default any path, is
//   upgraded; others get 404) and prints the port on the first line of
//   stdout. Every message is echoed with its type. After that, one JSON
//   line per event goes to stdout:
//     {"event":"connection","url":"/x","headers":{...}}
//     {"event":"message","binary":false,"len":5,"sha256":"..."}
//     {"event":"close","code":1000,"reason":"..."}
//     {"event":"error","message":"..."}   (e.g. an unmasked client frame)
// SIGTERM or SIGINT: stop listening, close every client with 1001, exit 0.
// A watchdog exits 1 after 120 s whatever happens, so a test that forgets
// the server cannot leave it behind.
'use strict';

const crypto = require('crypto');
const http = require('http');
const WebSocket = require('ws');

const path = process.argv[2] || null;
const watchdog = setTimeout(() => {
    console.error('ws_echo_server: watchdog: still running after 120 s');
    process.exit(1);
}, 120000);
watchdog.unref();

function log(obj) {
    // Pipes are synchronous on Linux: each line is out before we go on.
    process.stdout.write(JSON.stringify(obj) + '\n');
}

const server = http.createServer((req, res) => {
    res.writeHead(404, {'Content-Type': 'text/plain'});
    res.end('not a websocket\n');
});
// maxPayload above every message the tests send; no compression (moor
// does not offer it, and an echo must not depend on it).
const wss = new WebSocket.WebSocketServer({
    noServer: true,
    maxPayload: 64 << 20,
    perMessageDeflate: false,
});

server.on('upgrade', (req, socket, head) => {
    if (path && req.url !== path) {
        socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
        return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

wss.on('connection', (ws, req) => {
    log({event: 'connection', url: req.url, headers: req.headers});
    ws.on('message', (data, isBinary) => {
        const buf = Buffer.isBuffer(data) ? data : Buffer.concat(data);
        log({
            event: 'message',
            binary: isBinary,
            len: buf.length,
            sha256: crypto.createHash('sha256').update(buf).digest('hex'),
        });
        ws.send(buf, {binary: isBinary});
    });
    ws.on('close', (code, reason) => {
        log({event: 'close', code, reason: reason.toString()});
    });
    ws.on('error', (e) => log({event: 'error', message: e.message}));
});

function stop() {
    server.close();
    for (const ws of wss.clients) ws.close(1001, 'going away');
    // Give the close frames a moment, then go.
    setTimeout(() => process.exit(0), 200).unref();
    if (wss.clients.size === 0) process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${server.address().port}\n`);
});
