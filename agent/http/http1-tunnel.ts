import * as http from 'node:http';
import type { Duplex } from 'node:stream';
import { checkHttp1Request, upgradeProtocols, withoutHopByHop } from './headers';
import { decideSafely, Exchange, refusalVerdict } from './exchange';
import { refuseRaw, responseHead, spliceRaw } from './tunnel';
import type { RequestInfo, ServeHttpOptions } from './types';

/** What a tunnel needs of the request that asked for it (the parsed head). */
export interface TunnelRequest {
  method?: string;
  url?: string;
  /** what policy matches when the caller normalized the target (RequestInfo.path); else `url` */
  path?: string;
  /** the target as sent, when the caller's normalization changed it (RequestInfo.originalPath) */
  originalPath?: string;
  /** the request's host when the caller knows it (an absolute-form target's authority); else the Host field */
  host?: string;
  headers: RequestInfo['headers'];
  rawHeaders: string[];
}

/**
 * An HTTP/1 request that asks to leave HTTP: `Upgrade` (WebSocket) or `CONNECT`. After the
 * decision allows it, the request goes to the application on a connection of its own and the
 * application's answer is read with Node's parser: only a 101 (Upgrade) or a 2xx (CONNECT) turns
 * the connection into raw bytes both ways. Any other answer is passed back and the connection is
 * closed, so a refused upgrade cannot leave a blind tunnel that later requests would pass through
 * unseen (the WebSocket smuggling pattern).
 */
export async function onHttp1Tunnel(c: { o: ServeHttpOptions }, req: TunnelRequest, socket: Duplex, head: Buffer): Promise<void> {
  const host = req.host ?? req.headers.host;
  const info: RequestInfo = { method: req.method ?? '', path: req.path ?? req.url ?? '', host: typeof host === 'string' ? host : '', headers: req.headers, protocol: 'http1',
    ...(req.originalPath === undefined ? {} : { originalPath: req.originalPath }) };
  const ex = new Exchange(info, c.o.onExchange);
  socket.on('error', (e: Error) => ex.fail(e));
  const refuse = (status: number, body: string, why?: string): void => {
    ex.status = status;
    if (why) ex.fail(why);
    refuseRaw(socket, status, body);
    ex.report();
  };
  const isConnect = req.method === 'CONNECT';
  const checked = checkHttp1Request(req.rawHeaders, c.o.limits.maxRequestBodyBytes, c.o.limits.maxHeaderPairs);
  if (!checked.ok) {
    ex.verdict = refusalVerdict(checked.error.status, checked.error.reason);
    return refuse(checked.error.status, checked.error.reason, checked.error.reason);
  }
  if (!isConnect && upgradeProtocols(req.rawHeaders).includes('h2c')) {
    // HTTP/2 after an h2c upgrade would pass the application without per-request policy.
    ex.verdict = refusalVerdict(400, 'h2c upgrade');
    return refuse(400, 'h2c upgrade is not supported through the mesh; use HTTP/2 with prior knowledge', 'h2c upgrade refused');
  }
  const decided = decideSafely(c.o.decide, info);
  ex.verdict = decided.verdict;
  if (decided.error) ex.fail(decided.error);
  if (!decided.verdict.allow) return refuse(decided.verdict.status, decided.verdict.body);

  let app: Duplex;
  try {
    app = await c.o.connectUpstream();
  } catch (e) {
    return refuse(503, 'upstream connect error', e instanceof Error ? e.message : String(e));
  }
  if (socket.destroyed) {
    app.destroy();
    return ex.report();
  }
  const headers = isConnect ? withoutHopByHop(req.rawHeaders) : withoutHopByHop(req.rawHeaders, { keep: ['connection', 'upgrade'] });
  let upReq: http.ClientRequest;
  try {
    upReq = http.request({ createConnection: () => app as never, method: req.method, path: req.url, headers });
  } catch (e) {
    // A head Node's client will not send (a Trailer field on a request without a chunked body, a
    // field value it rejects): refused here, where it would have been an unhandled rejection.
    app.destroy();
    return refuse(400, 'request head cannot be forwarded', e instanceof Error ? e.message : String(e));
  }
  const agreed = async (res: http.IncomingMessage, upSocket: Duplex, upHead: Buffer): Promise<void> => {
    ex.status = res.statusCode ?? 0;
    socket.write(responseHead(ex.status, res.statusMessage, res.rawHeaders));
    if (upHead.length > 0) socket.write(upHead);
    if (head.length > 0) upSocket.write(head);
    const counts = await spliceRaw(socket, upSocket);
    ex.requestBytes = counts.fromClient + head.length;
    ex.responseBytes = counts.toClient + upHead.length;
    if (counts.error) ex.fail(counts.error);
    ex.report();
  };
  upReq.once('upgrade', (res, upSocket, upHead) => void agreed(res, upSocket, upHead));
  upReq.once('connect', (res, upSocket, upHead) => void agreed(res, upSocket, upHead));
  upReq.once('response', (res: http.IncomingMessage) => {
    // Not upgraded: pass the answer back, framed by the close of the connection.
    ex.status = res.statusCode ?? 502;
    const out = withoutHopByHop(res.rawHeaders, { drop: ['content-length', 'trailer'] });
    out.push('Connection', 'close');
    socket.write(responseHead(ex.status, res.statusMessage, out));
    res.on('data', (chunk: Buffer) => { ex.responseBytes += chunk.length; if (!socket.write(chunk)) res.pause(); });
    socket.on('drain', () => res.resume());
    res.once('end', () => { socket.end(); socket.once('finish', () => socket.destroy()); app.destroy(); ex.report(); });
  });
  upReq.once('error', (e: Error) => {
    app.destroy();
    if (ex.status === 0) refuse(502, 'upstream reset before response', e.message);
    else { ex.fail(e); socket.destroy(); ex.report(); }
  });
  upReq.end();
}
