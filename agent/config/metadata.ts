import type { Checker } from './checker';

export interface Metadata {
  name: string;
  /** 'default' when unset for namespaced kinds; '' for cluster-scoped kinds. */
  namespace: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** `metadata.uid`, when the manifest carries one. */
  uid?: string;
}

/** What Weft reads from ObjectMeta. */
const READ = ['name', 'namespace', 'labels', 'annotations', 'uid'];
/** Standard ObjectMeta fields real manifests and `kubectl get -o yaml` carry; accepted, not read. */
const CARRIED = [
  'resourceVersion', 'generation', 'creationTimestamp', 'deletionTimestamp',
  'deletionGracePeriodSeconds', 'generateName', 'ownerReferences', 'finalizers', 'managedFields', 'selfLink',
];
const ALLOWED = new Set([...READ, ...CARRIED]);

export const DEFAULT_NAMESPACE = 'default';

export function readMetadata(c: Checker, value: unknown, namespaced: boolean): Metadata {
  const meta = c.mapping(value, 'metadata') ?? {};
  c.allowOnly(meta, 'metadata', ALLOWED);
  const name = c.dnsSubdomain(meta.name, 'metadata.name') ?? '';
  let namespace = '';
  if (namespaced) {
    namespace = meta.namespace === undefined ? DEFAULT_NAMESPACE : (c.dnsLabel(meta.namespace, 'metadata.namespace') ?? '');
  } else if (meta.namespace !== undefined) {
    c.fail('metadata.namespace', 'must not be set: this kind is cluster-scoped');
  }
  const uid = c.optionalString(meta.uid, 'metadata.uid');
  return {
    name,
    namespace,
    labels: c.stringMap(meta.labels, 'metadata.labels'),
    annotations: c.stringMap(meta.annotations, 'metadata.annotations'),
    ...(uid !== undefined ? { uid } : {}),
  };
}
