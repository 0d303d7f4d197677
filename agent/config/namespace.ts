import type { Checker, Fields } from './checker';
import type { Metadata } from './metadata';
import type { NamespaceInfo } from './objects';

const SPEC = new Set(['finalizers']);
const STATUS = new Set(['phase', 'conditions']);

export function convertNamespace(c: Checker, obj: Fields, meta: Metadata): NamespaceInfo {
  c.allowOnly(c.optionalMapping(obj.spec, 'spec'), 'spec', SPEC);
  c.allowOnly(c.optionalMapping(obj.status, 'status'), 'status', STATUS);
  if (meta.name !== '') c.dnsLabel(meta.name, 'metadata.name');
  return { name: meta.name, labels: meta.labels };
}
