/**
 * The authorization decision per HTTP request, with 10 to 10,000 AuthorizationPolicies in force
 * of which four select the destination workload, against an empty PolicySet. The decision must
 * not grow with policies that do not select the workload. Numbers are written down in docs/policy.md.
 */
import { cpus } from 'node:os';
import { Checker } from '../../agent/config/checker';
import type { ConfigError } from '../../agent/config/config-error';
import { convertAuthorizationPolicy, PolicySet, type AuthorizationPolicyInfo, type ConnectionFacts, type RequestFacts, type Workload } from '../../agent/policy';

const WARMUP = 200_000;
const ITERATIONS = 1_000_000;
const SIZES = [10, 100, 1_000, 10_000];

function ap(namespace: string, name: string, spec: Record<string, unknown>): AuthorizationPolicyInfo {
  const errors: ConfigError[] = [];
  const info = convertAuthorizationPolicy(new Checker(name, errors), { spec }, { namespace, name, labels: {}, annotations: {} });
  if (errors.length > 0) throw new Error(JSON.stringify(errors));
  return info;
}

const WORKLOAD: Workload = { namespace: 'shop', labels: { app: 'web', version: 'v1', 'pod-template-hash': '7d4b9c' } };

/** The four that select the workload: a DENY, two ALLOWs and an AUDIT, one of them mesh-wide. */
function selecting(): AuthorizationPolicyInfo[] {
  return [
    ap('shop', 'deny-admin', { selector: { matchLabels: { app: 'web' } }, action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin*'] } }] }] }),
    ap('shop', 'allow-frontend', {
      selector: { matchLabels: { app: 'web' } },
      rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/frontend'] } }], to: [{ operation: { methods: ['GET', 'POST'], paths: ['/api/*'] } }] }],
    }),
    ap('shop', 'allow-probes', { rules: [{ from: [{ source: { ipBlocks: ['10.244.0.1'] } }], to: [{ operation: { paths: ['/healthz'] } }] }] }),
    ap('weft-system', 'audit-writes', { action: 'AUDIT', rules: [{ to: [{ operation: { methods: ['POST', 'PUT', 'DELETE'] } }] }] }),
  ];
}

/** Policies that do not select the workload: other apps of its namespace, and other namespaces. */
function others(count: number): AuthorizationPolicyInfo[] {
  return Array.from({ length: count }, (_, i) => {
    const namespace = i % 2 === 0 ? 'shop' : `team-${i % 200}`;
    return ap(namespace, `policy-${i}`, {
      selector: { matchLabels: { app: `app-${i}` } },
      action: i % 3 === 0 ? 'DENY' : 'ALLOW',
      rules: [{ from: [{ source: { namespaces: [`team-${i % 7}`] } }], to: [{ operation: { methods: ['GET'], paths: [`/v${i}/*`] } }] }],
    });
  });
}

const CONN: ConnectionFacts = { sourceIp: '10.244.1.5', sourcePort: 40000, sourcePrincipal: 'spiffe://cluster.local/ns/shop/sa/frontend', destinationIp: '10.244.2.7', destinationPort: 8080 };
const REQUESTS: RequestFacts[] = [
  { method: 'GET', path: '/api/items?page=2', host: 'web.shop', headers: { accept: 'application/json' } },
  { method: 'POST', path: '/api/cart', host: 'web.shop', headers: {} },
  { method: 'GET', path: '/admin/users', host: 'web.shop', headers: {} },
  { method: 'GET', path: '/static/app.js', host: 'web.shop', headers: {} },
];

/**
 * ns per decision: authorize() on the cached ApplicablePolicies; decide() with the forWorkload
 * lookup for the same labels object (the store's pod); and for a new labels object every time
 * (the cache key is built from the labels: the worst case).
 */
function measure(set: PolicySet): { authorize: number; decide: number; fresh: number; allowed: number } {
  const applicable = set.forWorkload(WORKLOAD);
  let allowed = 0;
  for (let i = 0; i < WARMUP; i++) if (set.authorize(applicable, CONN, REQUESTS[i & 3]!).allow) allowed++;
  allowed = 0;
  let start = process.hrtime.bigint();
  for (let i = 0; i < ITERATIONS; i++) if (set.authorize(applicable, CONN, REQUESTS[i & 3]!).allow) allowed++;
  const authorize = Number(process.hrtime.bigint() - start) / ITERATIONS;
  for (let i = 0; i < WARMUP; i++) set.decide(WORKLOAD, CONN, REQUESTS[i & 3]!);
  start = process.hrtime.bigint();
  for (let i = 0; i < ITERATIONS; i++) set.decide(WORKLOAD, CONN, REQUESTS[i & 3]!);
  const decide = Number(process.hrtime.bigint() - start) / ITERATIONS;
  for (let i = 0; i < WARMUP; i++) set.decide({ namespace: WORKLOAD.namespace, labels: { ...WORKLOAD.labels } }, CONN, REQUESTS[i & 3]!);
  start = process.hrtime.bigint();
  for (let i = 0; i < ITERATIONS; i++) set.decide({ namespace: WORKLOAD.namespace, labels: { ...WORKLOAD.labels } }, CONN, REQUESTS[i & 3]!);
  const fresh = Number(process.hrtime.bigint() - start) / ITERATIONS;
  return { authorize, decide, fresh, allowed };
}

export async function benchPolicy(): Promise<void> {
  console.log(`policy bench on node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'unknown cpu'}; 4 policies select the workload, 1M decisions per row`);
  const empty = measure(new PolicySet([]));
  console.log(`${'policies in force'.padEnd(18)} ${'authorize ns'.padStart(13)} ${'decide ns'.padStart(10)} ${'new labels ns'.padStart(14)} ${'vs empty'.padStart(9)} ${'vs 10'.padStart(7)}  allowed`);
  console.log(`${'0 (empty set)'.padEnd(18)} ${empty.authorize.toFixed(1).padStart(13)} ${empty.decide.toFixed(1).padStart(10)} ${empty.fresh.toFixed(1).padStart(14)} ${'1.00x'.padStart(9)} ${''.padStart(7)}  ${empty.allowed}`);
  let ten: number | undefined;
  for (const size of SIZES) {
    const set = new PolicySet([...selecting(), ...others(size - 4)]);
    const r = measure(set);
    ten ??= r.authorize;
    console.log(
      `${String(size).padEnd(18)} ${r.authorize.toFixed(1).padStart(13)} ${r.decide.toFixed(1).padStart(10)} ${r.fresh.toFixed(1).padStart(14)} ${`${(r.authorize / empty.authorize).toFixed(2)}x`.padStart(9)} ${`${(r.authorize / ten).toFixed(2)}x`.padStart(7)}  ${r.allowed}`,
    );
  }
}

if (require.main === module) {
  benchPolicy().catch((error) => { console.error(error); process.exitCode = 1; });
}
