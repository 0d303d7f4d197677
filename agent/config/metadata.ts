import type { Checker } from './checker';

export interface Metadata {
  name: string;
  /** 'default' when unset for namespaced kinds; '' for cluster-scoped kinds. */
  namespace: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** `metadata.uid`, when the manifest carries one. */
  uid?: string;
  /** `metadata.deletionTimestamp`: the object is being deleted (a terminating pod). */
  deletionTimestamp?: string;
}

/** What Weft reads from ObjectMeta. */
const READ = ['name', 'namespace', 'labels', 'annotations', 'uid', 'deletionTimestamp'];
/** Standard ObjectMeta fields real manifests and `kubectl get -o yaml` carry; accepted, not read. */
const CARRIED = [
  'resourceVersion', 'generation', 'creationTimestamp',
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
  const deletionTimestamp = timestamp(c, meta.deletionTimestamp, 'metadata.deletionTimestamp');
  return {
    name,
    namespace,
    labels: c.stringMap(meta.labels, 'metadata.labels'),
    annotations: c.stringMap(meta.annotations, 'metadata.annotations'),
    ...(uid !== undefined ? { uid } : {}),
    ...(deletionTimestamp !== undefined ? { deletionTimestamp } : {}),
  };
}

/** An RFC 3339 time as Kubernetes writes it (`2024-05-01T12:00:00Z`); `null` (as `kubectl get -o yaml` may show) reads as unset. */
function timestamp(c: Checker, value: unknown, field: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  const text = c.string(value, field);
  if (text === undefined) return undefined;
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(text) && !Number.isNaN(Date.parse(text))) return text;
  c.fail(field, `"${text}" is not an RFC 3339 time (e.g. 2024-05-01T12:00:00Z)`);
  return undefined;
}
