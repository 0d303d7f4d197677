/**
 * The control plane under benchmark, in a process of its own (so its memory is its own): the
 * production pieces startControlPlane (agent/controlplane/server.ts) assembles — the CA and its
 * serving certificate, the gRPC server with TLS, the bootstrap-token authenticator, the certificate
 * and discovery services over a SnapshotFeed — with an in-memory source in place of the Kubernetes
 * informers: the synthetic cluster (controlplane-cluster.ts), changed on request over IPC and
 * published to the feed as kube-source.ts publishes after an informer event (every object through
 * the production converters, then feed.publish).
 *
 * startControlPlane itself takes only the file or the Kubernetes source; this file repeats its
 * wiring (server.ts, lines "const server = new grpc.Server()" to the bind) for a feed we publish to.
 *
 * Run by controlplane-harness.ts: `node controlplane-server.js '{"pods":10000,"seed":1,"dataDir":"/tmp/..."}'`.
 * Messages in: {op:'pod', id, index, ready} | {op:'policy', id, round} | {op:'memory', id} | {op:'stop'}.
 * Messages out: {type:'ready', ...} once listening, {type:'published', id, at} (process.hrtime.bigint()
 * as a string, CLOCK_MONOTONIC, comparable with the parent's) right before feed.publish, {type:'memory', id, ...}.
 */
import * as grpc from '@grpc/grpc-js';
import { BootstrapTokenAuthenticator, loadOrCreateBootstrapToken } from '../../agent/controlplane/bootstrap-token';
import { CertificateAuthority } from '../../agent/controlplane/ca';
import { addCertificateService, tlsServerCredentials } from '../../agent/controlplane/cert-service';
import { SnapshotFeed } from '../../agent/controlplane/discovery-feed';
import { addDiscoveryService } from '../../agent/controlplane/discovery-service';
import { buildSnapshot, generateCluster, podReadinessChange, policyChange } from './controlplane-cluster';

export interface ServerArgs {
  pods: number;
  seed: number;
  dataDir: string;
}

export type ServerRequest =
  | { op: 'pod'; id: number; index: number; ready: boolean }
  | { op: 'policy'; id: number; round: number }
  | { op: 'memory'; id: number }
  | { op: 'stop' };

export type ServerReply =
  | { type: 'ready'; address: string; nodes: number; pods: number; services: number; endpointSlices: number; namespaces: number; customs: number; buildMs: number }
  | { type: 'published'; id: number; at: string; buildMs: number }
  | { type: 'memory'; id: number; heapUsedMiB: number; heapTotalMiB: number; externalMiB: number }
  | { type: 'failed'; error: string };

const reply = (message: ServerReply): void => {
  process.send!(message);
};

async function main(): Promise<void> {
  if (process.send === undefined) throw new Error('controlplane-server.js is started by the bench harness with an IPC channel (child_process.fork)');
  const args = JSON.parse(process.argv[2] ?? '{}') as ServerArgs;
  const cluster = generateCluster({ pods: args.pods, seed: args.seed });
  let started = performance.now();
  const initial = buildSnapshot(cluster);
  const buildMs = performance.now() - started;

  const ca = await CertificateAuthority.loadOrCreate({ dataDir: args.dataDir, trustDomain: 'cluster.local' });
  if (!ca.ok) throw new Error(`bench control plane CA in ${args.dataDir}: ${ca.error}`);
  const authenticator = new BootstrapTokenAuthenticator(loadOrCreateBootstrapToken(args.dataDir));
  const feed = new SnapshotFeed(initial);
  const server = new grpc.Server();
  addCertificateService(server, { ca: ca.value, authenticator, podsProvider: () => feed.current().snapshot.pods });
  // WEFT_CPBENCH_FULL_STATES (a number, or `none`) and WEFT_CPBENCH_CHUNK_BYTES: the limit on v2 full states in flight and the chunk size, to compare; default the product's.
  const limit = process.env.WEFT_CPBENCH_FULL_STATES;
  const chunk = process.env.WEFT_CPBENCH_CHUNK_BYTES;
  const discovery = addDiscoveryService(server, {
    authenticator, feed,
    ...(limit ? { maxConcurrentFullStates: limit === 'none' ? Infinity : Number(limit) } : {}),
    ...(chunk ? { chunkBytes: Number(chunk) } : {}),
  });
  const serving = await ca.value.issueServingCertificate({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], ttlSeconds: 86_400 });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', tlsServerCredentials(serving), (error, bound) => (error ? reject(error) : resolve(bound))));

  // kube-source.ts compares each build's JSON with the last one published and keeps that text: so does this, for its CPU and memory.
  let lastJson = JSON.stringify(initial);
  const publish = (id: number): void => {
    started = performance.now();
    const snapshot = buildSnapshot(cluster);
    const json = JSON.stringify(snapshot);
    if (json === lastJson) throw new Error(`change ${id} left the snapshot as it was: the bench would wait for nothing`);
    lastJson = json;
    const ms = performance.now() - started;
    const at = process.hrtime.bigint();
    feed.publish(snapshot);
    reply({ type: 'published', id, at: at.toString(), buildMs: ms });
  };

  process.on('message', (request: ServerRequest) => {
    try {
      if (request.op === 'pod') {
        podReadinessChange(cluster, request.index, request.ready);
        publish(request.id);
      } else if (request.op === 'policy') {
        policyChange(cluster, request.round);
        publish(request.id);
      } else if (request.op === 'memory') {
        // Live memory: after a full collection (the harness reads RSS from /proc before asking).
        (globalThis as { gc?: () => void }).gc?.();
        const m = process.memoryUsage();
        reply({ type: 'memory', id: request.id, heapUsedMiB: m.heapUsed / 2 ** 20, heapTotalMiB: m.heapTotal / 2 ** 20, externalMiB: m.external / 2 ** 20 });
      } else if (request.op === 'stop') {
        discovery.endStreams();
        server.forceShutdown();
        process.exit(0);
      }
    } catch (error) {
      reply({ type: 'failed', error: (error as Error).stack ?? String(error) });
    }
  });
  // The parent went away (a failed bench): do not outlive it.
  process.on('disconnect', () => process.exit(0));

  reply({
    type: 'ready', address: `127.0.0.1:${port}`, nodes: cluster.nodes.length, pods: cluster.pods.length, services: cluster.services.length, endpointSlices: cluster.endpointSlices.length,
    namespaces: cluster.namespaces.length, customs: cluster.customs.length, buildMs,
  });
}

main().catch((error: Error) => {
  process.send?.({ type: 'failed', error: error.stack ?? String(error) } satisfies ServerReply);
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 100);
});
