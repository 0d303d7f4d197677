import type { CoreV1Api, V1Secret } from '@kubernetes/client-node';
import { operationalLogger } from '../core/log';
import { err, ok, type Result } from '../core/result';
import type { RootStore, StoredRoot } from './ca-store';
import { writeFileAtomic } from './data-dir';
import { apiFailure, explainApiFailure, serialQueue, type ApiFailure } from './kube-api-failure';

/**
 * The CA root in a Kubernetes Secret (type Opaque, keys `ca-key.pem` and `ca.pem`), so that the
 * control plane keeps its root across pod restarts and replicas share one root. Creation is a
 * create (the API server lets one replica win; the others read the winner's root); every later
 * write is a replace with the resourceVersion last read, so two writers never overwrite each other.
 */

export interface SecretRef {
  namespace: string;
  name: string;
}

export const DEFAULT_CA_SECRET: SecretRef = { namespace: 'weft-system', name: 'weft-ca' };

const KEY = 'ca-key.pem';
const BUNDLE = 'ca.pem';
const PART_OF = { 'app.kubernetes.io/part-of': 'weft' };
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

const log = operationalLogger('ca');

/** `NAMESPACE/NAME`, as `--ca-secret` (and `--trust-bundle-configmap`, with `kind` ConfigMap) takes it. */
export function parseSecretRef(text: string, kind = 'Secret'): Result<SecretRef, string> {
  const [namespace, name, ...rest] = text.split('/');
  if (namespace === undefined || name === undefined || rest.length > 0) return err(`${JSON.stringify(text)} is not NAMESPACE/NAME`);
  if (namespace.length > 63 || !DNS_LABEL.test(namespace)) return err(`${JSON.stringify(namespace)} is not a namespace name (lower-case letters, digits and '-')`);
  if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) return err(`${JSON.stringify(name)} is not a ${kind} name (lower-case letters, digits, '-' and '.')`);
  return ok({ namespace, name });
}

export type SecretsApi = Pick<CoreV1Api, 'readNamespacedSecret' | 'createNamespacedSecret' | 'replaceNamespacedSecret'>;

export interface SecretRootStoreOptions {
  /** Also write the bundle here (the data directory's `ca.pem`, for agents outside Kubernetes). Never read. */
  bundleCopyPath?: string;
}

function decode(data: Record<string, string> | undefined, key: string): string | undefined {
  const value = data?.[key];
  if (value === undefined || value === '') return undefined;
  return Buffer.from(value, 'base64').toString('utf8');
}

function encode(root: StoredRoot): Record<string, string> {
  const data: Record<string, string> = {};
  if (root.keyPem !== undefined) data[KEY] = Buffer.from(root.keyPem, 'utf8').toString('base64');
  if (root.bundlePem !== undefined) data[BUNDLE] = Buffer.from(root.bundlePem, 'utf8').toString('base64');
  return data;
}

export class SecretRootStore implements RootStore {
  readonly location: string;
  readonly keyName: string;
  readonly bundleName: string;
  /** The Secret as last read or written; undefined when the last read found none. */
  private last: V1Secret | undefined;
  private hasRead = false;
  /** Writes go one at a time, each with the resourceVersion the previous one returned. */
  private readonly serially = serialQueue();

  constructor(
    private readonly api: SecretsApi,
    private readonly ref: SecretRef = DEFAULT_CA_SECRET,
    private readonly options: SecretRootStoreOptions = {},
  ) {
    this.location = `Secret ${ref.namespace}/${ref.name}`;
    this.keyName = `${KEY} in ${this.location}`;
    this.bundleName = `${BUNDLE} in ${this.location}`;
  }

  halfPresent(missing: 'key' | 'bundle'): string {
    const [present, absent] = missing === 'bundle' ? [KEY, BUNDLE] : [BUNDLE, KEY];
    return `${this.location} holds ${present} but not ${absent}: nothing was changed. Restore ${absent} from a backup `
      + `(kubectl -n ${this.ref.namespace} edit secret ${this.ref.name}), or delete the Secret to create a new root (then every agent needs the new ca.pem)`;
  }

  async read(): Promise<Result<StoredRoot, string>> {
    let secret: V1Secret;
    try {
      secret = await this.api.readNamespacedSecret({ namespace: this.ref.namespace, name: this.ref.name });
    } catch (error) {
      const failure = apiFailure(error);
      if (failure.code !== 404) return err(this.explain('read', failure));
      this.last = undefined;
      this.hasRead = true;
      return ok({});
    }
    this.last = secret;
    this.hasRead = true;
    const keyPem = decode(secret.data, KEY);
    const bundlePem = decode(secret.data, BUNDLE);
    return ok({ ...(keyPem !== undefined ? { keyPem } : {}), ...(bundlePem !== undefined ? { bundlePem } : {}) });
  }

  /**
   * Creates the Secret; if read() found it present but empty (made ahead by an operator), fills it
   * in with a replace. Losing the race (409 AlreadyExists or Conflict; 404 when it was deleted
   * meanwhile) is `false`: nothing was written.
   */
  create(root: Required<StoredRoot>): Promise<Result<boolean, string>> {
    return this.serially(async () => {
      if (!this.hasRead) return err(`${this.location} must be read before it is created`);
      const last = this.last;
      try {
        this.last = last === undefined
          ? await this.api.createNamespacedSecret({
            namespace: this.ref.namespace,
            body: { apiVersion: 'v1', kind: 'Secret', metadata: { name: this.ref.name, namespace: this.ref.namespace, labels: { ...PART_OF } }, type: 'Opaque', data: encode(root) },
          })
          : await this.replace({ ...last, metadata: { ...last.metadata, labels: { ...last.metadata?.labels, ...PART_OF } } }, root);
      } catch (error) {
        const failure = apiFailure(error);
        if (failure.code === 409 || (last !== undefined && failure.code === 404)) return ok(false);
        return err(this.explain(last === undefined ? 'create' : 'update', failure));
      }
      this.copyBundle(root.bundlePem);
      return ok(true);
    });
  }

  /** A replace with the resourceVersion last seen; nothing is sent when the Secret already holds `root`. */
  write(root: StoredRoot): Promise<Result<void, string>> {
    return this.serially(async () => {
      const last = this.last;
      if (last === undefined) return err(`${this.location} must be read or created before it is written`);
      const unchanged = (root.keyPem === undefined || root.keyPem === decode(last.data, KEY))
        && (root.bundlePem === undefined || root.bundlePem === decode(last.data, BUNDLE));
      if (!unchanged) {
        try {
          this.last = await this.replace(last, root);
        } catch (error) {
          const failure = apiFailure(error);
          if (failure.code === 409) {
            return err(`${this.location} changed since this control plane read it at resourceVersion ${last.metadata?.resourceVersion ?? '?'} `
              + `(another control plane replica or a person updated it); nothing was written. Restart this control plane to load the current root, then retry`);
          }
          return err(this.explain('update', failure));
        }
      }
      if (root.bundlePem !== undefined) this.copyBundle(root.bundlePem);
      return ok(undefined);
    });
  }

  /** Every field of the Secret as read (labels, annotations, owners, other keys) is kept; managedFields are the server's. */
  private replace(base: V1Secret, root: StoredRoot): Promise<V1Secret> {
    const { managedFields: _managed, ...metadata } = base.metadata ?? {};
    return this.api.replaceNamespacedSecret({
      namespace: this.ref.namespace,
      name: this.ref.name,
      body: { ...base, apiVersion: 'v1', kind: 'Secret', metadata: { ...metadata, name: this.ref.name, namespace: this.ref.namespace }, data: { ...base.data, ...encode(root) } },
    });
  }

  /** The Secret is what counts: a copy that cannot be written is a warning, not a failed write. */
  private copyBundle(bundlePem: string): void {
    const path = this.options.bundleCopyPath;
    if (path === undefined) return;
    try {
      writeFileAtomic(path, bundlePem, 0o644);
    } catch (error) {
      log.warn({ path, store: this.location, error: (error as Error).message }, 'could not write the copy of the trust bundle; agents outside Kubernetes that read it get an old one');
    }
  }

  private explain(verb: 'read' | 'create' | 'update', failure: ApiFailure): string {
    const { namespace, name } = this.ref;
    return explainApiFailure(verb, failure, {
      what: this.location, resource: 'secrets', name, namespace, role: 'weft-controlplane-ca', unchangedNote: '. Nothing was changed',
    });
  }
}
