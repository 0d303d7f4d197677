import { join } from 'node:path';
import { AuthenticationV1Api, CoordinationV1Api, CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type { Snapshot } from '../config/objects';
import type { Authenticator } from './authenticator';
import type { RootStore, TrustBundlePublisher } from './ca-store';
import { DEFAULT_CA_SECRET, SecretRootStore, type SecretRef } from './ca-store-secret';
import { boundedApiClient } from './kube-client';
import { loadKubeConfig, startKubeSource } from './kube-source';
import { DEFAULT_TIMING } from './leader-decision';
import { LeaderElector, type LeaderElectionOptions } from './leader-elector';
import { StatusWriter } from './status-writer';
import { TokenReviewAuthenticator } from './tokenreview-auth';
import { ConfigMapBundlePublisher, DEFAULT_TRUST_BUNDLE_CONFIGMAP, type ConfigMapRef } from './trust-bundle-configmap';

/** A TokenReview holds up an agent's connection: it is answered in milliseconds or not at all. */
const TOKEN_REVIEW_TIMEOUT_MS = 10_000;

/**
 * Everything the control plane takes from the Kubernetes API, in one module that server.ts loads
 * only in Kubernetes mode: @kubernetes/client-node alone adds about 60 MiB to a process's RSS,
 * which a local control plane (and `weft local`, which embeds one) does not pay.
 */
export class KubeWiring {
  private readonly kc: KubeConfig;

  constructor(kubeconfig?: string) {
    this.kc = loadKubeConfig(kubeconfig);
  }

  /** The CA root lives in a Secret; the data directory gets a copy of ca.pem for agents outside the cluster. */
  rootStore(dataDir: string, secret: SecretRef = DEFAULT_CA_SECRET): RootStore {
    return new SecretRootStore(boundedApiClient(this.kc, CoreV1Api), secret, { bundleCopyPath: join(dataDir, 'ca.pem') });
  }

  /** The trust bundle in a ConfigMap the agents mount as their --ca-file (it must be in their namespace). */
  bundlePublisher(configMap: ConfigMapRef = DEFAULT_TRUST_BUNDLE_CONFIGMAP): TrustBundlePublisher {
    return new ConfigMapBundlePublisher(boundedApiClient(this.kc, CoreV1Api), configMap);
  }

  tokenReview(): Authenticator {
    return new TokenReviewAuthenticator(boundedApiClient(this.kc, AuthenticationV1Api, TOKEN_REVIEW_TIMEOUT_MS));
  }

  /**
   * The cluster's state as snapshots. Unless `writeStatus` is false, the status of every HTTPRoute,
   * GRPCRoute, TrafficPolicy, AuthorizationPolicy, PeerAuthentication and ProxyConfig is written
   * back after each build (status-writer.ts), with an Event for each invalid object. With `leaderElection`, only while this replica holds the Lease
   * (leader-elector.ts): the writer starts inactive and, made active, plans from the latest view,
   * so a new leader rewrites every status that is not current.
   */
  async source(onSnapshot: (s: Snapshot) => void, options: { writeStatus?: boolean; leaderElection?: LeaderElectionOptions } = {}):
  Promise<{ initial: Snapshot; close(): Promise<void>; statusWriter?: StatusWriter; elector?: LeaderElector }> {
    const writer = options.writeStatus === false
      ? undefined
      : new StatusWriter({ custom: boundedApiClient(this.kc, CustomObjectsApi), core: boundedApiClient(this.kc, CoreV1Api) });
    const elector = writer && options.leaderElection
      ? new LeaderElector(boundedApiClient(this.kc, CoordinationV1Api, options.leaderElection.timing?.renewDeadlineMs ?? DEFAULT_TIMING.renewDeadlineMs), options.leaderElection, (leading) => writer.setActive(leading))
      : undefined;
    if (elector) writer!.setActive(false);
    const kube = await startKubeSource(this.kc, onSnapshot, writer && ((view) => writer.observe(view)));
    elector?.start();
    return {
      initial: kube.current(),
      async close() {
        // The Lease is released before the writer stops: a follower takes over at its next look.
        await elector?.close();
        writer?.close();
        kube.close();
      },
      ...(writer ? { statusWriter: writer } : {}),
      ...(elector ? { elector } : {}),
    };
  }
}
