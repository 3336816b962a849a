// echo_payloads.js - what the node echo clients (ws_echo_client.js,
// wss_echo_client.js) send and how they give up: payloads with known
// bytes, and a failure that exits 1 with the client's name.
'use strict';

// n bytes of a pattern that differs with seed.
function pattern(n, seed) {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
    return b;
}

// Exactly n bytes of UTF-8 with 1- to 4-byte characters.
function text(n) {
    const unit = 'moor κόσμε € 𝄞 ';
    const k = Math.floor(n / Buffer.byteLength(unit));
    const s = unit.repeat(k);
    return s + 'x'.repeat(n - Buffer.byteLength(s));
}

// The bytes of a message {data, binary}.
function bytesOf(m) {
    return Buffer.isBuffer(m.data) ? m.data : Buffer.from(m.data, 'utf8');
}

// fail(msg) for a client called name: the message on stderr, exit 1.
function failer(name) {
    return (msg) => {
        console.error(`${name}: ${msg}`);
        process.exit(1);
    };
}

module.exports = {pattern, text, bytesOf, failer};
