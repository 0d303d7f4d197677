import http from 'node:http';
import { listenShared } from '../proxy/shared-listener';

/** Answers a GET with JSON; an error with a `statusCode` (e.g. 400 for a bad query) answers that status. */
export type Handler = (query: URLSearchParams) => unknown | Promise<unknown>;

/** A handler's answer that is not JSON (the live page): sent as it is, with its content type and headers. */
export class RawBody {
  constructor(readonly contentType: string, readonly body: string, readonly headers: Record<string, string> = {}) {}
}

/** An error the caller made: answered 400 with its message. */
export function badRequest(message: string): Error {
  return Object.assign(new Error(message), { statusCode: 400 });
}

/**
 * A small JSON-over-HTTP server for the admin (15000, loopback only) and health (15021) ports.
 * Unknown paths are 404 with the list of known ones, so an operator can discover them.
 */
export async function serveJson(host: string, port: number, routes: Record<string, Handler>): Promise<http.Server> {
  const srv = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname;
    const route = routes[path];
    if (req.method !== 'GET' || !route) {
      res.writeHead(req.method !== 'GET' ? 405 : 404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: `${req.method} ${path} is not served here`, paths: Object.keys(routes) }) + '\n');
      return;
    }
    try {
      const body = await route(url.searchParams);
      if (body instanceof RawBody) {
        res.writeHead(200, { ...body.headers, 'content-type': body.contentType });
        res.end(body.body);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n');
    } catch (e) {
      res.writeHead((e as { statusCode?: number }).statusCode ?? 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: (e as Error).message }) + '\n');
    }
  });
  await listenShared(srv, { host, port }); // shared with a successor agent during an upgrade
  return srv;
}
