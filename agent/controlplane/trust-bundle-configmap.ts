import type { CoreV1Api, V1ConfigMap } from '@kubernetes/client-node';
import { operationalLogger } from '../core/log';
import { err, ok, type Result } from '../core/result';
import type { TrustBundlePublisher } from './ca-store';
import { apiFailure, explainApiFailure, serialQueue, type ApiFailure } from './kube-api-failure';

/**
 * The trust bundle (every active root, PEM) published in a ConfigMap (key `ca.pem`, label
 * `app.kubernetes.io/part-of: weft`) that the agents mount as their --ca-file: the kubelet
 * refreshes the mounted file when the ConfigMap changes, so a rotation reaches every node.
 *
 * The ConfigMap is a copy of what the root store holds: the CA publishes after the store accepted
 * the bundle, so the last writer here is the last one there. Each publish reads the ConfigMap,
 * then creates it (a 409 means another replica got there first: read again) or replaces it with
 * the resourceVersion it read (a 409 means it changed meanwhile: read again). Other keys, labels
 * and annotations are kept.
 */

export interface ConfigMapRef {
  namespace: string;
  name: string;
}

export const DEFAULT_TRUST_BUNDLE_CONFIGMAP: ConfigMapRef = { namespace: 'weft-system', name: 'weft-trust-bundle' };

/** The key agents read (`--ca-file /var/run/secrets/weft/ca.pem` with the ConfigMap mounted there). */
export const TRUST_BUNDLE_KEY = 'ca.pem';

const PART_OF = { 'app.kubernetes.io/part-of': 'weft' };
/** Read-then-write rounds lost to other writers before giving up. */
const ATTEMPTS = 5;

const log = operationalLogger('ca');

export type ConfigMapsApi = Pick<CoreV1Api, 'readNamespacedConfigMap' | 'createNamespacedConfigMap' | 'replaceNamespacedConfigMap'>;

type Round = { done: true; result: Result<void, string> } | { done: false; why: string };

export class ConfigMapBundlePublisher implements TrustBundlePublisher {
  readonly location: string;
  /** Publishes go one at a time, in the order asked: the last bundle asked for is the one left. */
  private readonly serially = serialQueue();

  constructor(private readonly api: ConfigMapsApi, private readonly ref: ConfigMapRef = DEFAULT_TRUST_BUNDLE_CONFIGMAP) {
    this.location = `ConfigMap ${ref.namespace}/${ref.name}`;
  }

  publish(bundlePem: string): Promise<Result<void, string>> {
    const work = async (): Promise<Result<void, string>> => {
      const lost: string[] = [];
      for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
        const round = await this.round(bundlePem);
        if (round.done) return round.result;
        lost.push(round.why);
      }
      return err(`cannot publish the trust bundle to ${this.location}: it changed under every one of ${ATTEMPTS} attempts (${lost.join('; ')}); check what else writes it`);
    };
    return this.serially(work);
  }

  /** One read, then at most one write. */
  private async round(bundlePem: string): Promise<Round> {
    const { namespace, name } = this.ref;
    let current: V1ConfigMap | undefined;
    try {
      current = await this.api.readNamespacedConfigMap({ namespace, name });
    } catch (error) {
      const failure = apiFailure(error);
      if (failure.code !== 404) return { done: true, result: err(this.explain('read', failure)) };
    }

    if (current === undefined) {
      try {
        await this.api.createNamespacedConfigMap({
          namespace,
          body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace, labels: { ...PART_OF } }, data: { [TRUST_BUNDLE_KEY]: bundlePem } },
        });
      } catch (error) {
        const failure = apiFailure(error);
        if (failure.code === 409) return { done: false, why: 'created by someone else between our read and our create' };
        return { done: true, result: err(this.explain('create', failure)) };
      }
      log.info({ configMap: `${namespace}/${name}`, roots: countRoots(bundlePem) }, 'published the trust bundle');
      return { done: true, result: ok(undefined) };
    }

    const labelled = Object.entries(PART_OF).every(([k, v]) => current!.metadata?.labels?.[k] === v);
    if (current.data?.[TRUST_BUNDLE_KEY] === bundlePem && labelled) return { done: true, result: ok(undefined) };
    const { managedFields: _managed, ...metadata } = current.metadata ?? {};
    try {
      await this.api.replaceNamespacedConfigMap({
        namespace,
        name,
        body: {
          ...current,
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: { ...metadata, name, namespace, labels: { ...metadata.labels, ...PART_OF } },
          data: { ...current.data, [TRUST_BUNDLE_KEY]: bundlePem },
        },
      });
    } catch (error) {
      const failure = apiFailure(error);
      if (failure.code === 409) return { done: false, why: `changed since resourceVersion ${current.metadata?.resourceVersion ?? '?'}` };
      if (failure.code === 404) return { done: false, why: 'deleted between our read and our update' };
      return { done: true, result: err(this.explain('update', failure)) };
    }
    log.info({ configMap: `${namespace}/${name}`, roots: countRoots(bundlePem) }, 'published the trust bundle');
    return { done: true, result: ok(undefined) };
  }

  private explain(verb: 'read' | 'create' | 'update', failure: ApiFailure): string {
    const { namespace, name } = this.ref;
    return explainApiFailure(verb, failure, {
      what: `${this.location}, where the agents read the trust bundle`, resource: 'configmaps', name, namespace, role: 'weft-controlplane-trust-bundle',
    });
  }
}

function countRoots(bundlePem: string): number {
  return bundlePem.split('-----BEGIN CERTIFICATE-----').length - 1;
}
