import { isRecord } from './status-conditions';

/**
 * A custom object as the API server hands it to the informer, with the parts a status writer
 * reads: the generation its conditions observe, the resourceVersion a patch is made against, and
 * the status it already has. Untyped beyond that: the spec was converted at the edge.
 */
export interface StatusObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    generation?: number;
    resourceVersion?: string;
  };
  spec?: unknown;
  status?: unknown;
}

/** `namespace/name`. */
export function statusObjectKey(obj: StatusObject): string {
  return `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
}

export function generationOf(obj: StatusObject): number | undefined {
  const g = obj.metadata?.generation;
  return typeof g === 'number' && Number.isInteger(g) ? g : undefined;
}

/** `status.<field>` when it is a list, else empty. */
export function statusList(obj: StatusObject, field: string): unknown[] {
  const value = isRecord(obj.status) ? obj.status[field] : undefined;
  return Array.isArray(value) ? value : [];
}
