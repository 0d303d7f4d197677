/** Every fuzz target, by name; each loads only its own modules (a worker runs one). */
import type { FuzzTarget } from './target';

/* eslint-disable @typescript-eslint/no-require-imports */
const TARGETS: Record<string, () => FuzzTarget> = {
  'hbone-authority': () => (require('./target-hbone-authority') as typeof import('./target-hbone-authority')).target,
  'hbone-forwarded': () => (require('./target-hbone-forwarded') as typeof import('./target-hbone-forwarded')).target,
  'traceparent': () => (require('./target-traceparent') as typeof import('./target-traceparent')).target,
  'spiffe-id': () => (require('./target-spiffe') as typeof import('./target-spiffe')).target,
  'http-sniff': () => (require('./target-http-sniff') as typeof import('./target-http-sniff')).target,
  'http-headers': () => (require('./target-http-headers') as typeof import('./target-http-headers')).target,
  'durations': () => (require('./target-durations') as typeof import('./target-durations')).target,
  'redirect-codec': () => (require('./target-redirect-codec') as typeof import('./target-redirect-codec')).target,
  'istio-ca-wire': () => (require('./target-istio-ca-wire') as typeof import('./target-istio-ca-wire')).target,
  'discovery-wire': () => (require('./target-discovery-wire') as typeof import('./target-discovery-wire')).target,
  'discovery-v2': () => (require('./target-discovery-v2') as typeof import('./target-discovery-v2')).target,
  'config-yaml': () => (require('./target-config-yaml') as typeof import('./target-config-yaml')).target,
  'config-objects': () => (require('./target-config-objects') as typeof import('./target-config-objects')).target,
  'http1-serve': () => (require('./target-http1-serve') as typeof import('./target-http1-serve')).target,
  'csr': () => (require('./target-csr') as typeof import('./target-csr')).target,
};

export const TARGET_NAMES: readonly string[] = Object.keys(TARGETS);

export function loadTarget(name: string): FuzzTarget {
  const load = TARGETS[name];
  if (!load) throw new Error(`no fuzz target "${name}"; there are: ${TARGET_NAMES.join(', ')}`);
  const target = load();
  if (target.name !== name) throw new Error(`fuzz target module for "${name}" names itself "${target.name}"`);
  return target;
}
