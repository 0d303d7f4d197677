/**
 * In-process cost of one access-log request line (ns per line), the way deliver.ts writes it: the
 * spec.accessLog gate asked, then the line built and handed to the destination.
 *   pino:   the old way (test/support/access-log-pino.ts): a child logger per connection with the
 *           ends as bindings, an object of fields per line, pino's serializer
 *   writer: core/log.ts AccessLog with proxy/access-log.ts members: the ends serialized once, each
 *           line's members appended as text
 * Each is measured writing (1) to a destination that drops the line (serialization alone) and
 * (2) to the real batched destination on /dev/null (batching and the write included).
 * Usage: node dist/test/bench/access-log-lines.js [lines per round, default 200000]
 */
import { openSync } from 'node:fs';
import { AccessLog, accessLogger, batchedDestination, wantsLine, type BatchedDestination } from '../../agent/core/log';
import { endsMembers, requestMembers, type ConnectionEnds, type ExchangeRecord } from '../../agent/proxy/access-log';
import { accessLogGate, DEFAULT_ACCESS_LOG } from '../../agent/telemetry/access-log-policy';
import { connectionEnds, pinoAccessLogger, requestFields } from '../support/access-log-pino';
import pino from 'pino';

const N = Number(process.argv[2] ?? 200_000);
const ROUNDS = 7;

const wl = (name: string, ns: string) => ({ namespace: ns, name: `${name}-7d9f8c6b5-x2k4q`, workload: name, identity: `spiffe://cluster.local/ns/${ns}/sa/${name}`, node: 'n1' });
const ENDS: ConnectionEnds = { direction: 'inbound', srcIp: '10.244.1.17', srcPort: 41234, src: wl('sleep', 'shop'), dstIp: '10.244.2.9', dstPort: 8080,
  dst: wl('httpbin', 'shop'), dstService: { namespace: 'shop', name: 'httpbin' } };
const X: ExchangeRecord & { requestBytes: number; responseBytes: number; durationMs: number } = {
  method: 'GET', path: '/api/v1/items?page=2', host: 'httpbin.shop.svc.cluster.local:8080', protocol: 'http1', status: 200, requestBytes: 0, responseBytes: 1432, durationMs: 0.8123,
};
const POLICY = { policy: 'shop/allow-get', rule: 0 };

const drop: BatchedDestination = { write: () => true, flushSync: () => undefined, flush: (cb) => cb?.() };
const gate = accessLogGate(() => DEFAULT_ACCESS_LOG);

/** CPU time (user + system) of this process since `c0`, in ns per line: the machine is shared, so wall time would measure its load. */
const nsPerLine = (c0: NodeJS.CpuUsage): number => { const c = process.cpuUsage(c0); return (c.user + c.system) * 1000 / N; };

/** One "connection" of N requests the pino way; returns ns of CPU per line. */
function pinoWay(log: pino.Logger, gateLog: AccessLog): number {
  const c0 = process.cpuUsage();
  let child: pino.Logger | undefined;
  for (let i = 0; i < N; i++) {
    if (wantsLine(gateLog, { decision: 'allow', status: X.status })) {
      child ??= log.child(connectionEnds(ENDS));
      child.info(requestFields({ decision: 'allow', bytesSent: X.requestBytes, bytesRecv: X.responseBytes, durationMs: X.durationMs }, X, POLICY), 'request complete');
    }
  }
  return nsPerLine(c0);
}

/** The same with the line writer. */
function writerWay(log: AccessLog): number {
  const c0 = process.cpuUsage();
  let ends: string | undefined;
  for (let i = 0; i < N; i++) {
    if (wantsLine(log, { decision: 'allow', status: X.status })) {
      ends ??= endsMembers(ENDS);
      log.write(ends + requestMembers({ decision: 'allow', bytesSent: X.requestBytes, bytesRecv: X.responseBytes, durationMs: X.durationMs, error: undefined }, X, POLICY),
        'request complete');
    }
  }
  return nsPerLine(c0);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function main(): void {
  const devNull = openSync('/dev/null', 'w'); // left open: the destinations flush into it on exit
  {
    const gateOnly = new AccessLog({ gate, out: drop });
    const cases: Array<[string, () => number]> = [
      ['pino, line dropped at the destination', () => pinoWay(pinoAccessLogger(() => undefined), gateOnly)],
      ['writer, line dropped at the destination', () => writerWay(new AccessLog({ gate, out: drop }))],
      ['pino, batched to /dev/null', () => pinoWay(pino({ base: undefined, messageKey: 'msg' }, batchedDestination(devNull)), gateOnly)],
      ['writer, batched to /dev/null', () => writerWay(accessLogger(devNull, {}, gate))],
    ];
    console.log(`# access-log request line, ${N} lines per round, CPU time per line, median of ${ROUNDS} rounds (after one warm-up round)`);
    for (const [name, run] of cases) {
      run();
      const ns = median(Array.from({ length: ROUNDS }, run));
      console.log(`${name.padEnd(42)} ${ns.toFixed(0).padStart(6)} ns/line`);
    }
  }
}

main();
