#!/usr/bin/env node
// Benchmark peer for moor: a WebSocket server on the npm `ws` package,
// written the way the package's README writes it.
//
//   GET /healthz  200 "ok\n" (plain HTTP, for readiness checks)
//   GET /echo     WebSocket: every message is sent back with its type
//   GET /sub      WebSocket: receives every message published on /pub
//   GET /pub      WebSocket: every message received is sent to every /sub
//
// usage: node server.js [--port N] [--host 127.0.0.1]
//                        [--tls-cert CHAIN.pem --tls-key KEY.pem]
//   --port 0 (the default) picks a free port.
//   --tls-cert, --tls-key: serve the same endpoints over TLS (https, wss)
//   with node's https/tls module and its defaults (OpenSSL, as bundled
//   with node: TLS 1.2 and 1.3, session tickets on, no session cache,
//   nothing tuned for memory).
//
// Once listening it prints one line to stdout:
//   node-ws listening on http://127.0.0.1:PORT (pid N)
//   node-ws listening on https://127.0.0.1:PORT (pid N)   (with TLS)
//
// One process, one thread for the sockets. Install: npm ci --prefix
// bench/peers/node (bench/peers/build.sh does it).
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const { WebSocketServer } = require('ws');

// The largest message accepted (ws closes with 1009 above it).
const MAX_MESSAGE = 16 * 1024 * 1024;
// The most bytes buffered for one subscriber; a subscriber that falls
// further behind is disconnected (moor's default "disconnect" policy).
const SUB_QUEUE_CAP = 8 * 1024 * 1024;
// Echo: stop reading a client whose replies are not being read once this
// much is buffered, read again below ECHO_LOW (without it `ws` buffers
// replies without bound; gorilla and lws stop reading too).
const ECHO_HIGH = 1024 * 1024;
const ECHO_LOW = 256 * 1024;

function parseArgs(argv) {
  const opts = { host: '127.0.0.1', port: 0, tlsCert: null, tlsKey: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf('=');
    const key = eq >= 0 ? a.slice(0, eq) : a;
    const val = () => (eq >= 0 ? a.slice(eq + 1) : argv[++i]);
    if (key === '--port') {
      opts.port = Number(val());
    } else if (key === '--host') {
      opts.host = val();
    } else if (key === '--tls-cert') {
      opts.tlsCert = val();
    } else if (key === '--tls-key') {
      opts.tlsKey = val();
    } else if (key === '-h' || key === '--help') {
      process.stdout.write('usage: node server.js [--port N] [--host 127.0.0.1] ' +
        '[--tls-cert CHAIN.pem --tls-key KEY.pem]\n');
      process.exit(0);
    } else {
      process.stderr.write(`node-ws: unknown argument ${a}\n`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    process.stderr.write('node-ws: --port must be 0..65535\n');
    process.exit(2);
  }
  if (!opts.tlsCert !== !opts.tlsKey) {
    process.stderr.write('node-ws: --tls-cert and --tls-key go together\n');
    process.exit(2);
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

const onRequest = (req, res) => {
  if (req.method === 'GET' && req.url === '/healthz') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('ok\n');
    return;
  }
  res.writeHead(404, { 'Content-Type': 'text/plain' });
  res.end('not found\n');
};

// With TLS: https.createServer with only the certificate and key given;
// everything else is node's default.
const tls = opts.tlsCert !== null;
const server = tls
  ? https.createServer(
    { cert: fs.readFileSync(opts.tlsCert), key: fs.readFileSync(opts.tlsKey) },
    onRequest)
  : http.createServer(onRequest);

const wsOptions = { noServer: true, maxPayload: MAX_MESSAGE, perMessageDeflate: false };
const echo = new WebSocketServer({ ...wsOptions, clientTracking: false });
const pub = new WebSocketServer({ ...wsOptions, clientTracking: false });
const sub = new WebSocketServer(wsOptions); // sub.clients: the subscribers

echo.on('connection', (ws) => {
  ws.on('error', () => {});
  const onSent = () => {
    if (ws.isPaused && ws.bufferedAmount < ECHO_LOW) ws.resume();
  };
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary }, onSent);
    if (ws.bufferedAmount > ECHO_HIGH && !ws.isPaused) ws.pause();
  });
});

sub.on('connection', (ws) => {
  ws.on('error', () => {});
  // Data from a subscriber is ignored; ws answers pings and closes itself.
});

pub.on('connection', (ws) => {
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    for (const client of sub.clients) {
      if (client.readyState !== client.OPEN) continue;
      if (client.bufferedAmount + data.length > SUB_QUEUE_CAP) {
        client.terminate();
        continue;
      }
      client.send(data, { binary: isBinary });
    }
  });
});

const routes = { '/echo': echo, '/sub': sub, '/pub': pub };

server.on('upgrade', (req, socket, head) => {
  const path = req.url.split('?')[0];
  const wss = routes[path];
  if (!wss) {
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

server.on('error', (err) => {
  process.stderr.write(`node-ws: ${err.message}\n`);
  process.exit(1);
});

server.listen(opts.port, opts.host, () => {
  const { address, port } = server.address();
  const scheme = tls ? 'https' : 'http';
  process.stdout.write(`node-ws listening on ${scheme}://${address}:${port} (pid ${process.pid})\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => process.exit(0));
}
