/**
 * The Prometheus endpoint (15020): `/metrics` and `/stats/prometheus` (the path Istio's annotations
 * name), text exposition format, on the node's addresses so that Prometheus can scrape it.
 */
import http from 'node:http';
import type { Registry } from 'prom-client';

export async function serveMetrics(host: string, port: number, registry: Registry): Promise<http.Server> {
  const srv = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://metrics').pathname;
    if (req.method !== 'GET' || (path !== '/metrics' && path !== '/stats/prometheus')) {
      res.writeHead(req.method !== 'GET' ? 405 : 404, { 'content-type': 'text/plain' });
      res.end(`${req.method} ${path} is not served here; metrics are at GET /metrics\n`);
      return;
    }
    registry.metrics().then((body) => {
      res.writeHead(200, { 'content-type': registry.contentType });
      res.end(body);
    }, (e: Error) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`collecting metrics failed: ${e.message}\n`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    srv.once('error', (e: NodeJS.ErrnoException) => reject(new Error(`metrics port ${host}:${port}: ${e.code ?? ''} ${e.message} (is another agent running on this node?)`)));
    srv.listen({ host, port }, () => { srv.removeAllListeners('error'); resolve(); });
  });
  return srv;
}
