/**
 * The proxy process of the same-node benchmark (same-node.ts), started inside a lab node. It is
 * built from the product's own pieces so that its two listeners differ only by the TLS hop:
 *
 * - plain: accept → connectWithTimeout(pod B) → relay(), what the outbound proxy does for a
 *   'local' route;
 * - hbone: accept → HbonePool.connect() to an HboneServer in this same process on the node's
 *   address (HTTP/2 CONNECT over mutual TLS 1.3, real workload certificates from a real
 *   CertificateAuthority, SNI and SAN checks as the agent does them) → relay(); the server side
 *   splices the stream into its own connection to pod B, as the inbound proxy does;
 * - splice: accept → connectWithTimeout(pod B, an ordinary socket) → spliceSockets(): the two
 *   sockets spliced in the kernel (bpf/weft_splice.c), what the proxy does for an allowed same-node
 *   TCP connection (docs/splice.md).
 *
 * Neither writes access logs or looks up redirect records: both are the same for the two paths.
 * Usage: same-node-relay.js <node ip> <pod B ip> <pod B port> <data dir> <plain port> <hbone port> <tunnel port> <splice port>
 * Prints one JSON line `{"ready":true}` when listening; answers `stats` on stdin with a JSON line.
 */
import net, { type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import type { Duplex } from 'node:stream';
import { CertificateAuthority } from '../../agent/controlplane/ca';
import { generateWorkloadKey } from '../../agent/identity/keys';
import { connectWithTimeout } from '../../agent/proxy/connect';
import { join } from 'node:path';
import { relay } from '../../agent/proxy/relay';
import { spliceSockets } from '../../agent/proxy/splice';
import { SpliceKernel } from '../../agent/proxy/splice-kernel';
import { HbonePool } from '../../agent/tunnel/hbone-pool';
import { HboneServer, type Credentials, spliceToTarget } from '../../agent/tunnel/hbone-server';
import { sniFor } from '../../agent/tunnel/sni';
import { childTraceparent } from '../../agent/tunnel/traceparent';

export const CLIENT_ID = 'spiffe://cluster.local/ns/bench/sa/client';
export const SERVER_ID = 'spiffe://cluster.local/ns/bench/sa/server';

async function issue(ca: CertificateAuthority, identity: string): Promise<Credentials> {
  const { keyPem, csrPem } = await generateWorkloadKey(identity);
  const chain = await ca.signWorkloadCsr(csrPem, { identity });
  if (!chain.ok) throw new Error(chain.error);
  return { key: keyPem, chain: chain.value };
}

function listen(host: string, port: number, onConnection: (s: Socket) => void): Promise<net.Server> {
  const srv = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => {
    s.on('error', () => undefined);
    onConnection(s);
  });
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, host, () => { srv.off('error', reject); resolve(srv); });
  });
}

async function main(): Promise<void> {
  const [nodeIp, podIp, podPortArg, dataDir, plainArg, hboneArg, tunnelArg, spliceArg] = process.argv.slice(2);
  if (!nodeIp || !podIp || !dataDir || !tunnelArg || !spliceArg) throw new Error('usage: same-node-relay <node ip> <pod ip> <pod port> <data dir> <plain port> <hbone port> <tunnel port> <splice port>');
  const [podPort, plainPort, hbonePort, tunnelPort, splicePort] = [podPortArg, plainArg, hboneArg, tunnelArg, spliceArg].map(Number) as [number, number, number, number, number];
  const kernel = SpliceKernel.load(join(__dirname, '..', '..', 'bpf'));
  const ca = await CertificateAuthority.loadOrCreate({ dataDir, trustDomain: 'cluster.local' });
  if (!ca.ok) throw new Error(ca.error);
  const trustBundle = ca.value.trustBundlePem();
  const client = await issue(ca.value, CLIENT_ID);
  const server = await issue(ca.value, SERVER_ID);
  const serverSni = sniFor(SERVER_ID);
  const stats = { plain: 0, hbone: 0, splice: 0, spliced: 0, streams: 0, streamErrors: 0, relayErrors: 0, peers: new Set<string>() };

  const tunnel = await HboneServer.listen({
    host: nodeIp,
    port: tunnelPort,
    trustBundle,
    identityFor: (name) => (name === serverSni ? server : undefined),
    authorize: ({ peerIdentity }) => { stats.peers.add(peerIdentity); return { allow: true }; },
    serve: spliceToTarget((t) => connectWithTimeout(t.ip, t.port, 10_000)),
    onStream: (info) => { stats.streams++; if (info.error) stats.streamErrors++; },
  });
  const pool = new HbonePool({ timeoutMs: 10_000 });
  const target = { ip: podIp, port: podPort };

  const carry = async (s: Socket, open: () => Promise<Duplex>): Promise<void> => {
    let upstream: Duplex;
    try {
      upstream = await open();
    } catch {
      stats.relayErrors++;
      s.resetAndDestroy();
      return;
    }
    const r = await relay(s, upstream);
    if (r.error) stats.relayErrors++;
  };
  const spliceOne = async (s: Socket): Promise<void> => {
    let upstream: Socket;
    try {
      upstream = await connectWithTimeout(podIp, podPort, 10_000, 'stream');
    } catch {
      stats.relayErrors++;
      s.resetAndDestroy();
      return;
    }
    const r = await spliceSockets(s, upstream, { kernel, onOutcome: (spliced) => { if (spliced) stats.spliced++; } });
    if (r.error) stats.relayErrors++;
  };
  const servers = [
    await listen(nodeIp, splicePort, (s) => { stats.splice++; void spliceOne(s); }),
    await listen(nodeIp, plainPort, (s) => { stats.plain++; void carry(s, () => connectWithTimeout(podIp, podPort, 10_000)); }),
    await listen(nodeIp, hbonePort, (s) => {
      stats.hbone++;
      void carry(s, () => pool.connect({
        sourceIdentity: CLIENT_ID,
        credentials: client,
        trustBundle,
        nodeAddress: { host: nodeIp, port: tunnelPort },
        expectedPeerIdentity: SERVER_ID,
        servername: serverSni,
        target,
        traceparent: childTraceparent(),
      }));
    }),
  ];

  const stop = (): void => {
    pool.destroy();
    tunnel.destroy();
    for (const s of servers) s.close();
    kernel.close();
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  createInterface({ input: process.stdin }).on('line', (line) => {
    if (line.trim() === 'stats') console.log(JSON.stringify({ ...stats, peers: [...stats.peers], sessions: pool.sessionCount, kernel: kernel.counters() }, (_k, v) => (typeof v === 'bigint' ? Number(v) : v)));
  });
  console.log(JSON.stringify({ ready: true }));
}

if (require.main === module) main().catch((e) => { console.error(e); process.exit(1); });
