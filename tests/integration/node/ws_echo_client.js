#!/usr/bin/env node
// ws_echo_client.js - interop check of moor's GET /echo with the `ws`
// package. Connects to URL, sends messages of assorted types and sizes
// (empty, 125/126/65535/65536 bytes, 1 MiB, multi-byte text, a message
// sent in fragments), checks that each comes back with its type and
// bytes, pings once, then closes with 1000 and expects 1000 back.
//
// usage: node ws_echo_client.js ws://127.0.0.1:PORT/echo [rounds]
// Exit status 0 on success; 1 with a message on stderr otherwise. A
// watchdog ends the process after 30 s whatever happens.
'use strict';

const WebSocket = require('ws');
const {pattern, text, bytesOf, failer} = require('./echo_payloads');

const fail = failer('ws_echo_client');

const url = process.argv[2];
const rounds = Number(process.argv[3] || 3);
if (!url) {
    console.error('usage: ws_echo_client.js URL [rounds]');
    process.exit(2);
}

const watchdog = setTimeout(() => fail('timed out after 30 s'), 30000);

// Each: {data, binary, fragments?}. Expected echo: the same bytes and
// type (fragments are sent as one fragmented message, echoed as one).
function messages() {
    const out = [];
    for (let r = 0; r < rounds; r++) {
        out.push({data: '', binary: false});
        out.push({data: Buffer.alloc(0), binary: true});
        out.push({data: 'hello', binary: false});
        out.push({data: 'héllo wörld € 𝄞', binary: false});
        for (const n of [1, 125, 126, 127, 65535, 65536]) {
            out.push({data: pattern(n, r), binary: true});
            out.push({data: text(n), binary: false});
        }
        out.push({data: pattern(1 << 20, r + 7), binary: true});
        out.push({data: text(1 << 20), binary: false});
        out.push({data: text(3000), binary: false, fragments: 7});
        out.push({data: pattern(100000, r), binary: true, fragments: 3});
    }
    return out;
}

function sendOne(ws, m) {
    if (!m.fragments) {
        ws.send(m.data, {binary: m.binary});
        return;
    }
    // ws sends one fragment per send() with fin: false, then the last
    // with fin: true. Fragments of text are cut on byte boundaries, so a
    // character may be split between fragments (legal: UTF-8 is checked
    // on the whole message).
    const b = bytesOf(m);
    const step = Math.ceil(b.length / m.fragments);
    for (let i = 0; i < b.length; i += step) {
        const last = i + step >= b.length;
        ws.send(b.subarray(i, i + step), {binary: m.binary, fin: last});
    }
}

const queue = messages();
let next = 0;
let gotPong = false;

const ws = new WebSocket(url, {maxPayload: 64 << 20, perMessageDeflate: false});

ws.on('error', (e) => fail(`error: ${e.message}`));

ws.on('open', () => {
    ws.ping(Buffer.from('node-ping'));
    // Send everything at once; the server answers in order.
    for (const m of queue) sendOne(ws, m);
});

ws.on('pong', (data) => {
    if (data.toString() !== 'node-ping') fail(`pong payload ${data}`);
    gotPong = true;
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
    if (next === queue.length) {
        if (!gotPong) fail('no pong for our ping');
        ws.close(1000, 'done');
    }
});

ws.on('close', (code, reason) => {
    clearTimeout(watchdog);
    if (next !== queue.length) {
        fail(`closed (${code} ${reason}) after ${next} of ${queue.length} echoes`);
    }
    if (code !== 1000) fail(`close code ${code} ${reason}, wanted 1000`);
    console.log(JSON.stringify({ok: true, messages: queue.length, close: code}));
    process.exit(0);
});
