/**
 * What one telemetry event costs the proxy's thread with Istio's metrics subscribed, in process (no
 * sockets): the ns per `requestCompleted.publish` (a request on a kept-alive connection: its label
 * set already derived) and per opened+closed connection pair, over PAIRS workload pairs on both
 * reporters, as the proxy publishes them. Then the scrape: ms to render /metrics with those series.
 *
 *   node dist/test/bench/metrics-event-cost.js [pairs]
 */
import { emptySnapshot, type PodInfo } from '../../agent/config/objects';
import { WorkloadStore } from '../../agent/state/store';
import { connectionClosed, connectionOpened, requestCompleted, type ConnectionEnds } from '../../agent/telemetry/events';
import { MeshMetrics } from '../../agent/telemetry/metrics';

const PAIRS = Number(process.argv[2] ?? 100);
const ROUNDS = 5;
const REQUESTS_PER_ROUND = 400_000;
const CONNECTIONS_PER_ROUND = 100_000;

const pod = (name: string, i: number): PodInfo => ({ namespace: 'bench', name, labels: { app: name, version: 'v1' }, annotations: {}, nodeName: 'n1',
  serviceAccount: name, ips: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`] });
const clients = Array.from({ length: PAIRS }, (_, i) => pod(`client-${i}`, i + 1));
const servers = Array.from({ length: PAIRS }, (_, i) => pod(`server-${i}`, PAIRS + i + 1));
const store = new WorkloadStore({ ...emptySnapshot(), namespaces: [{ name: 'bench', labels: { 'weft.dev/mesh': 'enabled' } }], pods: [...clients, ...servers] });
const ends: ConnectionEnds[] = clients.map((c, i) => ({ direction: 'inbound', srcIp: c.ips[0]!, srcPort: 40000, src: store.workloadRef(c),
  dstIp: servers[i]!.ips[0]!, dstPort: 8080, dst: store.workloadRef(servers[i]!) }));
const REPORTERS = ['source', 'destination'] as const;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function time(n: number, body: (i: number) => void): number {
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) body(i);
  return Number(process.hrtime.bigint() - t) / n;
}

async function main(): Promise<void> {
  const metrics = new MeshMetrics().subscribe();
  metrics.setStore(store);
  const request = (i: number) => requestCompleted.publish({ reporter: REPORTERS[i & 1]!, security: 'mutual_tls', ends: ends[(i >> 1) % PAIRS]!, protocol: 'http',
    status: 200, requestBytes: 0, responseBytes: 700 + (i & 1023), durationMs: 0.3 + (i & 15), flags: '-' });
  const connection = (i: number) => {
    const ev = { reporter: REPORTERS[i & 1]!, security: 'mutual_tls' as const, ends: ends[(i >> 1) % PAIRS]! };
    connectionOpened.publish(ev);
    connectionClosed.publish({ ...ev, bytesFromClient: 300, bytesToClient: 500 + (i & 255), flags: '-' });
  };
  time(50_000, request); // warm-up: derive every label set, let the JIT settle
  time(20_000, connection);
  const req: number[] = [];
  const conn: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    req.push(time(REQUESTS_PER_ROUND, request));
    conn.push(time(CONNECTIONS_PER_ROUND, connection));
  }
  const scrape: number[] = [];
  const buffers: number[] = [];
  let text = '';
  for (let r = 0; r < 7; r++) {
    let t = performance.now();
    text = await metrics.metrics();
    scrape.push(performance.now() - t);
    t = performance.now();
    await metrics.registry.exposition();
    buffers.push(performance.now() - t);
  }
  metrics.unsubscribe();
  const samples = text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length;
  console.log(`# metrics event cost, ${PAIRS} pod pairs x 2 reporters, median of ${ROUNDS} rounds`);
  console.log(`request event: ${median(req).toFixed(0)} ns (min ${Math.min(...req).toFixed(0)}, max ${Math.max(...req).toFixed(0)})`);
  console.log(`connection opened+closed: ${median(conn).toFixed(0)} ns (min ${Math.min(...conn).toFixed(0)}, max ${Math.max(...conn).toFixed(0)})`);
  console.log(`render: ${samples} samples, ${(text.length / 1024 / 1024).toFixed(2)} MiB; as Buffers (what /metrics sends) median ${median(buffers).toFixed(1)} ms, as one string (registry.metrics()) median ${median(scrape).toFixed(1)} ms`);
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
