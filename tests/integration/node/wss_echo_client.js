#!/usr/bin/env node
// wss_echo_client.js - WebSocket over TLS with the `ws` package: connects
// to a wss:// URL trusting only the CA certificate in CA_FILE (the `ca`
// option, so the system store plays no part and the host name is
// checked), sends text and binary messages of assorted sizes (small, over
// one 16 KiB TLS record, 1 MiB), checks that each comes back with its
// type and bytes, then closes with 1000 and expects 1000 back.
//
// usage: node wss_echo_client.js wss://HOST:PORT/echo CA_FILE
// Prints one JSON line on success ({ok, messages, close, protocol,
// cipher, subject, serial}) and exits 0; exits 1 with a message on
// stderr otherwise. A watchdog ends the process after 30 s whatever
// happens.
'use strict';

const fs = require('fs');
const WebSocket = require('ws');
const {pattern, text, bytesOf, failer} = require('./echo_payloads');

const fail = failer('wss_echo_client');

const url = process.argv[2];
const caFile = process.argv[3];
if (!url || !caFile) {
    console.error('usage: wss_echo_client.js URL CA_FILE');
    process.exit(2);
}

const watchdog = setTimeout(() => fail('timed out after 30 s'), 30000);

const queue = [];
for (const n of [0, 1, 125, 126, 16383, 16384, 16385, 65536, 1 << 20]) {
    queue.push({data: pattern(n, n & 0xff), binary: true});
    queue.push({data: text(n), binary: false});
}

let next = 0;
let peer = null;

const ws = new WebSocket(url, {
    ca: fs.readFileSync(caFile),
    maxPayload: 64 << 20,
    perMessageDeflate: false,
});

ws.on('error', (e) => fail(`error: ${e.message}`));

ws.on('upgrade', (res) => {
    const sock = res.socket;
    const cert = sock.getPeerCertificate();
    peer = {
        protocol: sock.getProtocol(),
        cipher: sock.getCipher().name,
        authorized: sock.authorized,
        subject: cert.subject ? cert.subject.O || cert.subject.CN : null,
        serial: cert.serialNumber,
    };
});

ws.on('open', () => {
    if (!peer || !peer.authorized) fail('TLS peer not authorized');
    for (const m of queue) ws.send(m.data, {binary: m.binary});
});

ws.on('message', (data, isBinary) => {
    const m = queue[next];
    if (!m) fail(`unexpected message ${next}`);
    if (isBinary !== m.binary) {
        fail(`message ${next}: sent binary=${m.binary}, echo binary=${isBinary}`);
    }
    const want = bytesOf(m);
    const got = Buffer.isBuffer(data) ? data : Buffer.concat(data);
    if (!got.equals(want)) {
        fail(`message ${next}: echo of ${want.length} bytes differs ` +
             `(${got.length} bytes back)`);
    }
    next++;
    if (next === queue.length) ws.close(1000, 'done');
});

ws.on('close', (code, reason) => {
    clearTimeout(watchdog);
    if (next !== queue.length) {
        fail(`closed (${code} ${reason}) after ${next} of ${queue.length} echoes`);
    }
    if (code !== 1000) fail(`close code ${code} ${reason}, wanted 1000`);
    console.log(JSON.stringify({ok: true, messages: queue.length, close: code,
                                ...peer}));
    process.exit(0);
});
