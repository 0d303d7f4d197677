import { hostname, networkInterfaces } from 'node:os';
import { isIP } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { Snapshot } from '../config/objects';
import { watchConfig } from '../config/watch';
import { formatConfigError } from '../config/config-error';
import { operationalLogger } from '../core/log';
import { err, type Result } from '../core/result';
import type { Authenticator, Caller } from './authenticator';
import { BootstrapTokenAuthenticator, loadOrCreateBootstrapToken } from './bootstrap-token';
import { CertificateAuthority } from './ca';
import type { SecretRef } from './ca-store-secret';
import type { ConfigMapRef } from './trust-bundle-configmap';
import type { LeaderElectionOptions } from './leader-elector';
import { addCertificateService, tlsServerCredentials } from './cert-service';
import { SnapshotFeed } from './discovery-feed';
import { addDiscoveryService } from './discovery-service';

/**
 * With the Kubernetes source the CA root lives in a Secret (default weft-system/weft-ca) and the
 * trust bundle is published in a ConfigMap (default weft-system/weft-trust-bundle); otherwise both
 * are in the data directory.
 */
export type SourceOptions = { kind: 'file'; path: string }
  | { kind: 'kube'; kubeconfig?: string; caSecret?: SecretRef; trustBundleConfigMap?: ConfigMapRef; leaderElection?: LeaderElectionOptions };

export interface ControlPlaneOptions {
  /** host:port; port 0 picks a free one (see `address`). */
  listen: string;
  dataDir: string;
  trustDomain?: string;
  source: SourceOptions;
  /** DNS names and IPs in the serving certificate; default: the host name, 127.0.0.1 and every local interface address. */
  servingNames?: string[];
  /** Also in the serving certificate, beside `servingNames` or the defaults: the names agents dial (Kubernetes: the Service's DNS name). */
  extraServingNames?: string[];
  /** Longest workload certificate lifetime signed (the certificate service's cap; a request for 0 gets min(24 h, this)). */
  workloadTtlSeconds?: number;
}

export interface ControlPlane {
  /** host:port actually bound. */
  address: string;
  /** Ends the discovery streams, stops the sources and the listener. */
  close(): Promise<void>;
}

/** The serving certificate is issued at every start; it outlives any sensible uptime. */
const SERVING_TTL_SECONDS = 365 * 86_400;
const SHUTDOWN_GRACE_MS = 2_000;

const log = operationalLogger('controlplane');

interface Source {
  close(): void | Promise<void>;
}

function defaultServingNames(): string[] {
  const addresses = Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
  return [...new Set([hostname(), '127.0.0.1', ...addresses])];
}

function splitHostPort(listen: string): { host: string; port: number } {
  const match = /^\[?([^\]]*)\]?:(\d+)$/.exec(listen);
  if (!match) throw new Error(`--listen ${listen} is not host:port`);
  return { host: match[1]!, port: Number(match[2]) };
}

/** Agents outside Kubernetes present the bootstrap token, agents in it their ServiceAccount token. */
function eitherAuthenticator(first: Authenticator, second: Authenticator): Authenticator {
  return {
    async authenticate(metadata): Promise<Result<Caller, string>> {
      const a = await first.authenticate(metadata);
      if (a.ok) return a;
      const b = await second.authenticate(metadata);
      return b.ok ? b : err(`${b.error} (nor is it the bootstrap token: ${a.error})`);
    },
  };
}

function watchConfigFile(path: string, onSnapshot: (s: Snapshot) => void): Source & { initial: Snapshot } {
  const watch = watchConfig(path, onSnapshot, (errors) => {
    const problems = errors instanceof Error ? [errors.message] : errors.map(formatConfigError);
    log.warn({ config: path, problems }, 'config edit not applied; the last good config stays in force');
  });
  return { initial: watch.current(), close: () => watch.close() };
}

export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const trustDomain = options.trustDomain ?? 'cluster.local';
  // Loaded only in Kubernetes mode (the client library is large). There the root outlives the pod
  // in a Secret, the bundle is published in a ConfigMap the agents mount, and the data directory
  // gets a copy of ca.pem.
  const src = options.source;
  const kube = src.kind === 'kube' ? new (await import('./kube-wiring')).KubeWiring(src.kubeconfig) : undefined;
  const rootStore = src.kind === 'kube' ? kube?.rootStore(options.dataDir, src.caSecret) : undefined;
  const bundlePublisher = src.kind === 'kube' ? kube?.bundlePublisher(src.trustBundleConfigMap) : undefined;
  const ca = await CertificateAuthority.loadOrCreate({
    dataDir: options.dataDir, trustDomain, ...(rootStore ? { rootStore } : {}), ...(bundlePublisher ? { bundlePublisher } : {}),
  });
  if (!ca.ok) throw new Error(`control plane CA${rootStore ? '' : ` in ${options.dataDir}`}: ${ca.error}`);
  const bootstrap = new BootstrapTokenAuthenticator(loadOrCreateBootstrapToken(options.dataDir));

  let feed: SnapshotFeed | undefined;
  const publish = (s: Snapshot): void => feed?.publish(s);
  const source = src.kind === 'file' ? watchConfigFile(src.path, publish) : await kube!.source(publish, src.kind === 'kube' && src.leaderElection ? { leaderElection: src.leaderElection } : {});
  feed = new SnapshotFeed(source.initial);
  const ready = feed;
  const authenticator = kube ? eitherAuthenticator(bootstrap, kube.tokenReview()) : bootstrap;

  const server = new grpc.Server();
  addCertificateService(server, {
    ca: ca.value,
    authenticator,
    podsProvider: () => ready.current().snapshot.pods,
    ...(options.workloadTtlSeconds !== undefined ? { maxTtlSeconds: options.workloadTtlSeconds } : {}),
  });
  const discovery = addDiscoveryService(server, { authenticator, feed });

  const names = [...new Set([...(options.servingNames ?? defaultServingNames()), ...(options.extraServingNames ?? [])])];
  const { host } = splitHostPort(options.listen);
  if (host !== '' && host !== '0.0.0.0' && host !== '::' && !names.includes(host)) names.push(host);
  const serving = await ca.value.issueServingCertificate({
    dnsNames: names.filter((n) => isIP(n) === 0),
    ipAddresses: names.filter((n) => isIP(n) !== 0),
    ttlSeconds: SERVING_TTL_SECONDS,
  });
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(options.listen, tlsServerCredentials(serving), (error, bound) => (error ? reject(error) : resolve(bound))));
  } catch (error) {
    source.close();
    server.forceShutdown();
    throw new Error(`control plane cannot listen on ${options.listen}: ${(error as Error).message}`);
  }
  const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  log.info({ address, dataDir: options.dataDir, source: options.source.kind, trustDomain, servingNames: names }, 'control plane listening');

  return {
    address,
    async close() {
      await source.close();
      discovery.endStreams();
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => { server.forceShutdown(); resolve(); }, SHUTDOWN_GRACE_MS);
        server.tryShutdown(() => { clearTimeout(force); resolve(); });
      });
      log.info({ address }, 'control plane stopped');
    },
  };
}
