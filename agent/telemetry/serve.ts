/**
 * The Prometheus endpoint (15020): `/metrics` and `/stats/prometheus` (the path Istio's annotations
 * name), text exposition format, on the node's addresses so that Prometheus can scrape it.
 *
 * Weft's registry (exposition-registry.ts) is written out as Buffers and sent as they come, not
 * made into one string first; gzip-compressed (fastest level, in libuv's threads, off the proxy's
 * event loop) when the scraper accepts it, as Prometheus does by default: 1,000 pod pairs are ~118
 * MiB of text, mostly the same label sets again.
 */
import http from 'node:http';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream';
import zlib from 'node:zlib';
import type { Registry } from 'prom-client';
import { listenShared } from '../proxy/shared-listener';
import { ExpositionRegistry } from './exposition-registry';

/** Whether an Accept-Encoding header admits gzip (`gzip`, `gzip;q=0.5`, `*`; not `gzip;q=0`). Pure. */
export function acceptsGzip(header: string | undefined): boolean {
  if (!header) return false;
  for (const part of header.split(',')) {
    const [coding, ...params] = part.trim().split(';').map((s) => s.trim().toLowerCase());
    if (coding !== 'gzip' && coding !== 'x-gzip' && coding !== '*') continue;
    const q = params.find((p) => p.startsWith('q='));
    if (q === undefined || Number(q.slice(2)) > 0) return true;
  }
  return false;
}

/** Writes the exposition of `registry` to what `open` returns (called once collecting succeeded), then ends it. */
async function send(registry: Registry, open: () => Writable): Promise<void> {
  if (registry instanceof ExpositionRegistry) {
    await registry.stream(open);
    return;
  }
  const text = await registry.metrics();
  open().end(text);
}

export async function serveMetrics(host: string, port: number, registry: Registry): Promise<http.Server> {
  const srv = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://metrics').pathname;
    if (req.method !== 'GET' || (path !== '/metrics' && path !== '/stats/prometheus')) {
      res.writeHead(req.method !== 'GET' ? 405 : 404, { 'content-type': 'text/plain' });
      res.end(`${req.method} ${path} is not served here; metrics are at GET /metrics\n`);
      return;
    }
    const gzip = acceptsGzip(req.headers['accept-encoding']);
    let opened = false;
    const open = (): Writable => {
      opened = true;
      res.writeHead(200, { 'content-type': registry.contentType, ...(gzip ? { 'content-encoding': 'gzip', vary: 'accept-encoding' } : {}) });
      if (!gzip) return res;
      const gz = zlib.createGzip({ level: zlib.constants.Z_BEST_SPEED });
      // Either end failing or closing ends both (a scraper that hangs up stops the writing).
      pipeline(gz, res, () => {});
      return gz;
    };
    send(registry, open).catch((e: Error) => {
      if (opened) {
        res.destroy(e);
        return;
      }
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`collecting metrics failed: ${e.message}\n`);
    });
  });
  try {
    await listenShared(srv, { host, port }); // shared with a successor agent during an upgrade
  } catch (e) {
    throw new Error(`metrics port: ${(e as Error).message}`, { cause: e });
  }
  return srv;
}
