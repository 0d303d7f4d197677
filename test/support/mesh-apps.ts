/**
 * Applications and clients the end-to-end tests run inside lab pods (plain `node -e` scripts).
 * The application logs every connection and request it sees as a JSON line on stdout, so a test
 * can assert that it saw nothing of what the proxy denied.
 */

/**
 * argv: pod name, grpc-js module path. Serves:
 *   8080 HTTP/1.1 (JSON answer; GET /big streams N bytes; WebSocket upgrade echoing one text frame)
 *   7000 TCP echo      2525 server-first (SMTP-like banner, then echo)
 *   8443 HTTP/2 h2c: POST /upload answers the sha256 of the body, with trailers; and a gRPC service
 */
export const APP_SERVER = String.raw`
const [pod, grpcPath] = process.argv.slice(1);
const plain = (a) => String(a).replace(/^::ffff:/, '');
const log = (o) => process.stdout.write(JSON.stringify({ pod, ...o }) + '\n');
const crypto = require('crypto');
const net = require('net');
const http = require('http');
const http2 = require('http2');
const grpc = require(grpcPath);

const web = http.createServer((req, res) => {
  log({ ev: 'request', port: 8080, method: req.method, url: req.url, remote: plain(req.socket.remoteAddress) });
  let n = 0;
  req.on('data', (d) => { n += d.length; });
  req.on('end', () => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ pod, method: req.method, url: req.url, remote: plain(req.socket.remoteAddress), bodyBytes: n, headers: req.headers }));
  });
});
web.on('connection', (s) => log({ ev: 'connection', port: 8080, remote: plain(s.remoteAddress) }));
web.on('upgrade', (req, socket) => {
  log({ ev: 'upgrade', port: 8080, url: req.url, remote: plain(socket.remoteAddress) });
  const accept = crypto.createHash('sha1').update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ' + accept + '\r\n\r\n');
  socket.on('data', (f) => {
    const len = f[1] & 0x7f; const mask = f.subarray(2, 6); const body = Buffer.from(f.subarray(6, 6 + len));
    for (let i = 0; i < body.length; i++) body[i] ^= mask[i % 4];
    const out = Buffer.from('echo:' + body.toString());
    socket.write(Buffer.concat([Buffer.from([0x81, out.length]), out]));
  });
  socket.on('error', () => {});
});
web.listen(8080, '::');

net.createServer((s) => {
  log({ ev: 'connection', port: 7000, remote: plain(s.remoteAddress) });
  s.pipe(s); s.on('error', () => {});
}).listen(7000, '::');

net.createServer((s) => {
  log({ ev: 'connection', port: 2525, remote: plain(s.remoteAddress) });
  s.write('220 ' + pod + ' ESMTP ready\r\n');
  s.on('data', (d) => s.write('250 ' + d.toString().trim() + '\r\n'));
  s.on('error', () => {});
}).listen(2525, '::');

const h2 = http2.createServer();
h2.on('stream', (stream, headers) => {
  if (headers['content-type'] && String(headers['content-type']).startsWith('application/grpc')) return;
  log({ ev: 'request', port: 8443, method: headers[':method'], url: headers[':path'] });
  const h = crypto.createHash('sha256'); let n = 0;
  stream.on('data', (d) => { h.update(d); n += d.length; });
  stream.on('end', () => {
    stream.respond({ ':status': 200, 'content-type': 'text/plain' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'x-body-sha256': h.digest('hex'), 'x-body-bytes': String(n) }));
    stream.end('got ' + n);
  });
  stream.on('error', () => {});
});
// gRPC on the same h2c port: a raw-handler service (no .proto), JSON messages.
const json = { serialize: (o) => Buffer.from(JSON.stringify(o)), deserialize: (b) => JSON.parse(b.toString()) };
const service = {
  Hello: { path: '/weft.Test/Hello', requestStream: false, responseStream: false, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
  Count: { path: '/weft.Test/Count', requestStream: false, responseStream: true, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
  Fail: { path: '/weft.Test/Fail', requestStream: false, responseStream: false, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
};
const gs = new grpc.Server();
gs.addService(service, {
  Hello: (call, cb) => { log({ ev: 'grpc', method: 'Hello' }); cb(null, { hello: call.request.name, pod }); },
  Count: (call) => {
    log({ ev: 'grpc', method: 'Count' });
    for (let i = 0; i < call.request.n; i++) call.write({ i });
    const md = new grpc.Metadata(); md.set('x-count', String(call.request.n));
    call.end(md);
  },
  Fail: (call, cb) => { log({ ev: 'grpc', method: 'Fail' }); cb({ code: grpc.status.PERMISSION_DENIED, details: 'not you' }); },
});
gs.bindAsync('[::]:8444', grpc.ServerCredentials.createInsecure(), (e) => {
  if (e) { console.error(e.message); process.exit(1); }
  h2.listen(8443, '::', () => console.log('listening'));
});
`;

/**
 * argv: grpc-js path, host. Calls Hello, Count (server streaming, trailing metadata) and Fail on
 * host:8444 and prints one JSON line with what came back.
 */
export const GRPC_CLIENT = String.raw`
const [grpcPath, host] = process.argv.slice(1);
const grpc = require(grpcPath);
const json = { serialize: (o) => Buffer.from(JSON.stringify(o)), deserialize: (b) => JSON.parse(b.toString()) };
const C = grpc.makeGenericClientConstructor({
  Hello: { path: '/weft.Test/Hello', requestStream: false, responseStream: false, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
  Count: { path: '/weft.Test/Count', requestStream: false, responseStream: true, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
  Fail: { path: '/weft.Test/Fail', requestStream: false, responseStream: false, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
});
const c = new C(host.includes(':') ? '[' + host + ']:8444' : host + ':8444', grpc.credentials.createInsecure());
const out = {};
c.Hello({ name: 'weft' }, (e, r) => {
  out.hello = e ? { error: e.code } : r;
  const items = []; const call = c.Count({ n: 5 });
  call.on('data', (d) => items.push(d.i));
  call.on('status', (s) => {
    out.count = { items, code: s.code, trailer: s.metadata.get('x-count')[0] };
    c.Fail({}, (e2) => { out.fail = { code: e2 && e2.code, details: e2 && e2.details }; console.log(JSON.stringify(out)); process.exit(0); });
  });
});
setTimeout(() => { console.log(JSON.stringify({ ...out, timeout: true })); process.exit(1); }, 15000);
`;

/** argv: host, MiB. Streams MiB random MiB as an HTTP/2 POST to host:8443/upload; prints status, body, trailers, sha256. */
export const H2_UPLOAD = String.raw`
const [host, mib] = process.argv.slice(1);
const crypto = require('crypto'); const h = crypto.createHash('sha256');
const s = require('http2').connect('http://' + (host.includes(':') ? '[' + host + ']' : host) + ':8443');
s.on('error', (e) => { console.error(e.message); process.exit(1); });
const req = s.request({ ':method': 'POST', ':path': '/upload' });
let status, body = '', trailers;
req.on('response', (hd) => { status = hd[':status']; });
req.on('trailers', (t) => { trailers = t; });
req.setEncoding('utf8'); req.on('data', (d) => body += d);
req.on('end', () => { console.log(JSON.stringify({ status, body, trailers, sent: h.digest('hex'), heapMiB: Math.round(process.memoryUsage().rss / 1048576) })); s.close(); });
let left = Number(mib);
const chunk = crypto.randomBytes(1 << 20);
const pump = () => { while (left > 0) { left--; h.update(chunk); if (!req.write(chunk)) return req.once('drain', pump); } req.end(); };
pump();
`;

/** argv: host, port, text. A WebSocket handshake and one masked text frame; prints the status line and the echoed frame's text. */
export const WS_CLIENT = String.raw`
const [host, port, text] = process.argv.slice(1);
const key = require('crypto').randomBytes(16).toString('base64');
const s = require('net').connect(Number(port), host, () => {
  s.write('GET /chat HTTP/1.1\r\nHost: ' + host + '\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ' + key + '\r\nSec-WebSocket-Version: 13\r\n\r\n');
});
let buf = Buffer.alloc(0); let status;
s.on('data', (d) => {
  buf = Buffer.concat([buf, d]);
  if (status === undefined) {
    const end = buf.indexOf('\r\n\r\n'); if (end < 0) return;
    status = buf.subarray(0, buf.indexOf('\r\n')).toString(); buf = buf.subarray(end + 4);
    const body = Buffer.from(text); const mask = Buffer.from([1, 2, 3, 4]);
    const masked = Buffer.from(body.map((b, i) => b ^ mask[i % 4]));
    s.write(Buffer.concat([Buffer.from([0x81, 0x80 | body.length]), mask, masked]));
  }
  if (buf.length >= 2 && buf.length >= 2 + buf[1]) { console.log(JSON.stringify({ status, frame: buf.subarray(2, 2 + buf[1]).toString() })); process.exit(0); }
});
s.on('error', (e) => { console.log(JSON.stringify({ error: e.code || e.message })); });
setTimeout(() => { console.log(JSON.stringify({ status, timeout: true })); process.exit(1); }, 8000).unref();
`;

/** argv: host, port. Reads the server's banner without sending anything first, then one command; prints both lines. */
export const SERVER_FIRST_CLIENT = String.raw`
const [host, port] = process.argv.slice(1);
const s = require('net').connect(Number(port), host);
let got = ''; let sent = false;
s.setEncoding('utf8');
s.on('data', (d) => { got += d; if (!sent && got.includes('\r\n')) { sent = true; s.write('HELO weft\r\n'); } else if (sent && got.split('\r\n').length > 2) { console.log(JSON.stringify(got.split('\r\n').slice(0, 2))); s.end(); } });
s.on('error', (e) => { console.log(JSON.stringify({ error: e.code || e.message })); });
setTimeout(() => { console.log(JSON.stringify({ timeout: true, got })); process.exit(1); }, 8000).unref();
`;

/**
 * argv: host, port. Holds one TCP connection, sending a line every 100 ms for at most 20 s; prints
 * `open` once the first echo returns and `closed <ms>` when the connection ends.
 */
export const HOLD_CLIENT = String.raw`
const [host, port] = process.argv.slice(1);
const started = Date.now(); let opened = false;
const s = require('net').connect(Number(port), host);
const t = setInterval(() => s.write('ping\n'), 100);
s.on('data', () => { if (!opened) { opened = true; console.log('open'); } });
const done = (why) => { clearInterval(t); console.log('closed ' + (Date.now() - started) + ' ' + why); process.exit(0); };
s.on('close', () => done('close')); s.on('error', (e) => done(e.code || e.message));
setTimeout(() => { console.log('still-open'); process.exit(0); }, 20000);
`;

/** argv: host, port, raw request (JSON-encoded string). Sends it as is, prints what came back (until the server closes or 3 s pass). */
export const RAW_CLIENT = String.raw`
const [host, port, raw] = process.argv.slice(1);
const s = require('net').connect(Number(port), host, () => s.write(JSON.parse(raw)));
let got = '';
s.setEncoding('latin1'); s.on('data', (d) => got += d);
const done = () => { console.log(JSON.stringify(got)); process.exit(0); };
s.on('close', done); s.on('error', done);
setTimeout(done, 3000);
`;
