import http from 'node:http';

export type Handler = () => unknown | Promise<unknown>;

/**
 * A small JSON-over-HTTP server for the admin (15000, loopback only) and health (15021) ports.
 * Unknown paths are 404 with the list of known ones, so an operator can discover them.
 */
export async function serveJson(host: string, port: number, routes: Record<string, Handler>): Promise<http.Server> {
  const srv = http.createServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const route = routes[path];
    if (req.method !== 'GET' || !route) {
      res.writeHead(req.method !== 'GET' ? 405 : 404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: `${req.method} ${path} is not served here`, paths: Object.keys(routes) }) + '\n');
      return;
    }
    try {
      const body = await route();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n');
    } catch (e) {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: (e as Error).message }) + '\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen({ host, port }, () => { srv.off('error', reject); resolve(); });
  });
  return srv;
}
