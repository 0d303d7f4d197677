import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Checker } from '../../agent/config/checker';
import type { ConfigError } from '../../agent/config/config-error';
import { formatConfigError } from '../../agent/config/config-error';
import {
  convertAuthorizationPolicy, PolicySet,
  type AuthorizationPolicyInfo, type ConnectionFacts, type RequestFacts, type Workload,
} from '../../agent/policy';

/**
 * The decision, table-driven. Cases follow Istio's AuthorizationPolicy reference and concept
 * pages (istio.io/latest/docs/reference/config/security/authorization-policy/,
 * .../concepts/security/#authorization-policies, .../tasks/security/authorization/*), named after
 * the example where there is one. Policies are written as Istio specs and go through the same
 * validation as a config file, so each case also proves its policy is accepted.
 */

function ap(namespace: string, name: string, spec: Record<string, unknown>): AuthorizationPolicyInfo {
  const errors: ConfigError[] = [];
  const info = convertAuthorizationPolicy(new Checker(`AuthorizationPolicy ${namespace}/${name}`, errors), { spec }, { namespace, name, labels: {}, annotations: {} });
  if (errors.length > 0) assert.fail(errors.map(formatConfigError).join('\n'));
  return info;
}

const HTTPBIN: Workload = { namespace: 'foo', labels: { app: 'httpbin', version: 'v1' } };
const SLEEP = 'spiffe://cluster.local/ns/default/sa/sleep';
const CONN: ConnectionFacts = { sourceIp: '10.0.0.5', sourcePort: 40000, sourcePrincipal: SLEEP, destinationIp: '10.0.1.7', destinationPort: 8000 };
const GET_INFO: RequestFacts = { method: 'GET', path: '/info', host: 'httpbin.foo', headers: {} };

interface Case {
  name: string;
  policies: AuthorizationPolicyInfo[];
  workload?: Workload;
  conn?: Partial<ConnectionFacts>;
  /** 'tcp': judged as a plain TCP connection (no request). */
  req?: Partial<RequestFacts> | 'tcp';
  allow: boolean;
  /** The deciding policy and rule; absent when none decided. */
  policy?: string;
  rule?: number;
  audit?: string[];
  reason?: RegExp;
}

const plaintext = (conn: Partial<ConnectionFacts> = {}): Partial<ConnectionFacts> => ({ ...conn, sourcePrincipal: undefined });

// --- policies reused across cases -------------------------------------------------------------
const allowNothing = ap('foo', 'allow-nothing', {});
const denyAll = ap('foo', 'deny-all', { action: 'DENY', rules: [{}] });
const allowAll = ap('foo', 'allow-all', { rules: [{}] });
/** The reference page's first example. */
const allowRead = ap('foo', 'httpbin', {
  selector: { matchLabels: { app: 'httpbin', version: 'v1' } },
  action: 'ALLOW',
  rules: [{
    from: [{ source: { principals: ['cluster.local/ns/default/sa/sleep'] } }, { source: { namespaces: ['test'] } }],
    to: [{ operation: { methods: ['GET'], paths: ['/info*'] } }, { operation: { methods: ['POST'], paths: ['/data'] } }],
  }],
});
/** The reference page's DENY example: POST from namespace dev is denied on every workload in foo. */
const denyDevPost = ap('foo', 'httpbin-deny', {
  action: 'DENY',
  rules: [{ from: [{ source: { namespaces: ['dev'] } }], to: [{ operation: { methods: ['POST'] } }] }],
});
/** The reference page's AUDIT example. */
const auditProfile = ap('foo', 'httpbin-audit', {
  selector: { matchLabels: { app: 'httpbin' } },
  action: 'AUDIT',
  rules: [{ to: [{ operation: { methods: ['GET'], paths: ['/user/profile/*'] } }] }],
});
/** Task "Authorization for TCP traffic". */
const tcpPorts = ap('foo', 'tcp-policy', {
  selector: { matchLabels: { app: 'httpbin' } },
  action: 'ALLOW',
  rules: [{ to: [{ operation: { ports: ['9000', '9001'] } }] }],
});
const tcpPortsWithMethods = ap('foo', 'tcp-policy', {
  selector: { matchLabels: { app: 'httpbin' } },
  action: 'ALLOW',
  rules: [{ to: [{ operation: { methods: ['GET'], ports: ['9000'] } }] }],
});
const tcpDenyWithMethods = ap('foo', 'tcp-policy', {
  selector: { matchLabels: { app: 'httpbin' } },
  action: 'DENY',
  rules: [{ to: [{ operation: { methods: ['GET'], ports: ['9000'] } }] }],
});
/** Task "Authorization on ingress gateway" / ipBlocks. */
const ipAllow = ap('foo', 'ingress-policy', {
  selector: { matchLabels: { app: 'httpbin' } },
  action: 'ALLOW',
  rules: [{ from: [{ source: { ipBlocks: ['1.2.3.4', '5.6.7.0/24', 'fd00:1::/64'] } }] }],
});
const meshDenyAll = ap('weft-system', 'deny-all', { action: 'DENY', rules: [{}] });
const meshAllowNothing = ap('weft-system', 'allow-nothing', {});

const GET = (path: string, extra: Partial<RequestFacts> = {}): Partial<RequestFacts> => ({ method: 'GET', path, ...extra });
const POST = (path: string, extra: Partial<RequestFacts> = {}): Partial<RequestFacts> => ({ method: 'POST', path, ...extra });
const from = (ns: string, sa = 'app'): Partial<ConnectionFacts> => ({ sourcePrincipal: `spiffe://cluster.local/ns/${ns}/sa/${sa}` });

const cases: Case[] = [
  // --- evaluation order and the special cases Istio defines ---------------------------------------
  { name: 'no policy at all: allow', policies: [], allow: true, reason: /^no policy$/ },
  { name: 'reference "allow-nothing" (spec: {}): deny everything', policies: [allowNothing], allow: false, reason: /no ALLOW policy matched; in force: foo\/allow-nothing/ },
  { name: 'reference "allow-nothing" also denies plain TCP', policies: [allowNothing], req: 'tcp', allow: false },
  { name: 'reference "deny-all" (DENY, rules: [{}]): deny everything', policies: [denyAll], allow: false, policy: 'foo/deny-all', rule: 0, reason: /DENY policy foo\/deny-all rule 0 matched: every request/ },
  { name: 'reference "allow-all" (rules: [{}]): allow everything', policies: [allowAll], allow: true, policy: 'foo/allow-all', rule: 0 },
  { name: 'reference "allow-all" allows a plaintext TCP client too', policies: [allowAll], req: 'tcp', conn: plaintext(), allow: true, policy: 'foo/allow-all', rule: 0 },
  { name: 'DENY over ALLOW: "deny-all" wins over "allow-all"', policies: [allowAll, denyAll], allow: false, policy: 'foo/deny-all', rule: 0 },
  {
    name: 'a DENY policy without rules matches nothing (the webhook refuses it; the decision still holds)',
    policies: [{ namespace: 'foo', name: 'deny-none', action: 'DENY', rules: [] }], allow: true, reason: /no DENY policy matched and no ALLOW policy applies/,
  },
  { name: 'only a DENY policy that does not match: allow (no ALLOW policy)', policies: [denyDevPost], req: POST('/data'), allow: true },
  { name: 'ALLOW present but none matching: deny, naming the ALLOW policies in force', policies: [allowRead, tcpPorts], req: GET('/admin'), allow: false, reason: /in force: foo\/httpbin, foo\/tcp-policy$/ },
  { name: 'of two ALLOW policies the first (by name) that matches decides', policies: [allowRead, allowAll], req: GET('/info'), allow: true, policy: 'foo/allow-all', rule: 0 },
  {
    name: 'the first matching rule is the one reported',
    policies: [ap('foo', 'two-rules', { rules: [{ to: [{ operation: { methods: ['POST'] } }] }, { to: [{ operation: { methods: ['GET'] } }] }] })],
    req: GET('/'), allow: true, policy: 'foo/two-rules', rule: 1,
  },
  // --- reference example "httpbin" (from principals or namespace test, GET /info* or POST /data) ----
  { name: 'reference "httpbin": sleep GET /info allowed', policies: [allowRead], req: GET('/info'), allow: true, policy: 'foo/httpbin', rule: 0, reason: /ALLOW policy foo\/httpbin rule 0 matched: principal spiffe:\/\/cluster.local\/ns\/default\/sa\/sleep, source namespace default, method GET, path \/info/ },
  { name: 'reference "httpbin": GET /info/details matches prefix /info*', policies: [allowRead], req: GET('/info/details'), allow: true, policy: 'foo/httpbin', rule: 0 },
  { name: 'reference "httpbin": the query string is not part of the path', policies: [allowRead], req: POST('/data?x=1'), allow: true, policy: 'foo/httpbin', rule: 0 },
  { name: 'reference "httpbin": POST /info denied (method and path are ANDed)', policies: [allowRead], req: POST('/info'), allow: false },
  { name: 'reference "httpbin": GET /data denied', policies: [allowRead], req: GET('/data'), allow: false },
  { name: 'reference "httpbin": namespace test is the other source', policies: [allowRead], conn: from('test', 'any'), req: GET('/info'), allow: true, policy: 'foo/httpbin', rule: 0 },
  { name: 'reference "httpbin": another principal of another namespace is denied', policies: [allowRead], conn: from('prod', 'sleep'), req: GET('/info'), allow: false },
  { name: 'reference "httpbin": paths are case-sensitive', policies: [allowRead], req: GET('/INFO'), allow: false },
  { name: 'reference "httpbin": methods are case-sensitive', policies: [allowRead], req: { method: 'get', path: '/info' }, allow: false },
  // --- selector, namespace, root namespace -----------------------------------------------------------
  { name: 'selector: a workload the selector does not match is not governed by it', policies: [allowRead], workload: { namespace: 'foo', labels: { app: 'httpbin', version: 'v2' } }, req: GET('/admin'), allow: true, reason: /^no policy$/ },
  { name: 'selector: extra workload labels do not stop a match', policies: [allowRead], workload: { namespace: 'foo', labels: { app: 'httpbin', version: 'v1', team: 'x' } }, req: GET('/admin'), allow: false },
  { name: 'namespace-wide (no selector) governs every workload of the namespace', policies: [allowNothing], workload: { namespace: 'foo', labels: {} }, allow: false },
  { name: 'an empty selector is namespace-wide', policies: [ap('foo', 'empty-selector', { selector: {} })], workload: { namespace: 'foo', labels: { app: 'x' } }, allow: false },
  { name: 'policies of other namespaces do not apply', policies: [allowNothing, denyAll], workload: { namespace: 'bar', labels: { app: 'httpbin', version: 'v1' } }, allow: true, reason: /^no policy$/ },
  { name: 'root namespace: weft-system "deny-all" applies in every namespace', policies: [meshDenyAll], workload: { namespace: 'bar', labels: {} }, allow: false, policy: 'weft-system/deny-all', rule: 0 },
  { name: 'root namespace: a mesh-wide "allow-nothing" denies everywhere', policies: [meshAllowNothing], workload: { namespace: 'bar', labels: {} }, allow: false, reason: /in force: weft-system\/allow-nothing/ },
  { name: 'root namespace: a namespace ALLOW lets through what the mesh-wide allow-nothing does not', policies: [meshAllowNothing, allowAll], allow: true, policy: 'foo/allow-all', rule: 0 },
  {
    name: 'root namespace: a mesh-wide selector selects matching workloads in every namespace',
    policies: [ap('weft-system', 'deny-httpbin', { selector: { matchLabels: { app: 'httpbin' } }, action: 'DENY', rules: [{}] })],
    workload: { namespace: 'bar', labels: { app: 'httpbin' } }, allow: false, policy: 'weft-system/deny-httpbin', rule: 0,
  },
  {
    name: 'root namespace: the mesh-wide selector leaves other workloads alone',
    policies: [ap('weft-system', 'deny-httpbin', { selector: { matchLabels: { app: 'httpbin' } }, action: 'DENY', rules: [{}] })],
    workload: { namespace: 'bar', labels: { app: 'sleep' } }, allow: true,
  },
  { name: 'root namespace: a workload in weft-system itself is governed once', policies: [meshDenyAll], workload: { namespace: 'weft-system', labels: {} }, allow: false, policy: 'weft-system/deny-all', rule: 0 },
  // --- the reference DENY example ------------------------------------------------------------------
  { name: 'reference DENY example: POST from namespace dev is denied', policies: [denyDevPost, allowAll], conn: from('dev'), req: POST('/data'), allow: false, policy: 'foo/httpbin-deny', rule: 0, reason: /matched: source namespace dev, method POST$/ },
  { name: 'reference DENY example: GET from namespace dev is not denied', policies: [denyDevPost, allowAll], conn: from('dev'), req: GET('/data'), allow: true, policy: 'foo/allow-all', rule: 0 },
  { name: 'reference DENY example: POST from another namespace is not denied', policies: [denyDevPost, allowAll], req: POST('/data'), allow: true, policy: 'foo/allow-all', rule: 0 },
  // --- AUDIT -----------------------------------------------------------------------------------------
  { name: 'reference AUDIT example: a matching AUDIT never decides, it is reported', policies: [auditProfile], req: GET('/user/profile/7'), allow: true, audit: ['foo/httpbin-audit'] },
  { name: 'AUDIT beside a deciding DENY is reported with the DENY', policies: [auditProfile, denyAll], req: GET('/user/profile/7'), allow: false, policy: 'foo/deny-all', rule: 0, audit: ['foo/httpbin-audit'] },
  { name: 'AUDIT beside a default deny does not allow', policies: [auditProfile, allowNothing], req: GET('/user/profile/7'), allow: false, audit: ['foo/httpbin-audit'] },
  { name: 'AUDIT that does not match is not reported', policies: [auditProfile], req: GET('/user/other'), allow: true },
  { name: 'AUDIT with HTTP fields on TCP drops them, as a DENY does, and is reported', policies: [auditProfile], req: 'tcp', allow: true, audit: ['foo/httpbin-audit'] },
  // --- prefix, suffix, presence, notPaths, hosts, ports, methods ---------------------------------------
  {
    name: 'notPaths: DENY everything but /healthz (reference "notPaths" usage)',
    policies: [ap('foo', 'deny-not-health', { action: 'DENY', rules: [{ to: [{ operation: { notPaths: ['/healthz'] } }] }] })],
    req: GET('/admin'), allow: false, policy: 'foo/deny-not-health', rule: 0,
  },
  {
    name: 'notPaths: the excluded path passes',
    policies: [ap('foo', 'deny-not-health', { action: 'DENY', rules: [{ to: [{ operation: { notPaths: ['/healthz'] } }] }] })],
    req: GET('/healthz'), allow: true,
  },
  { name: 'suffix path *.png matches /img/a.png', policies: [ap('foo', 'png', { rules: [{ to: [{ operation: { paths: ['*.png'] } }] }] })], req: GET('/img/a.png'), allow: true, policy: 'foo/png', rule: 0 },
  { name: 'suffix path *.png does not match /img/a.jpg', policies: [ap('foo', 'png', { rules: [{ to: [{ operation: { paths: ['*.png'] } }] }] })], req: GET('/img/a.jpg'), allow: false },
  { name: 'presence path * matches any request', policies: [ap('foo', 'any-path', { rules: [{ to: [{ operation: { paths: ['*'] } }] }] })], req: GET('/'), allow: true, policy: 'foo/any-path', rule: 0 },
  { name: 'hosts are matched case-insensitively', policies: [ap('foo', 'host', { rules: [{ to: [{ operation: { hosts: ['HttpBin.Foo'] } }] }] })], req: GET('/', { host: 'HTTPBIN.foo' }), allow: true, policy: 'foo/host', rule: 0 },
  { name: 'hosts suffix *.example.com matches www.Example.com', policies: [ap('foo', 'host', { rules: [{ to: [{ operation: { hosts: ['*.example.com'] } }] }] })], req: GET('/', { host: 'www.Example.com' }), allow: true, policy: 'foo/host', rule: 0 },
  { name: 'notHosts excludes a host', policies: [ap('foo', 'host', { rules: [{ to: [{ operation: { notHosts: ['admin.*'] } }] }] })], req: GET('/', { host: 'admin.foo' }), allow: false },
  { name: 'ports: the destination port is matched', policies: [tcpPorts], conn: { destinationPort: 9001 }, allow: true, policy: 'foo/tcp-policy', rule: 0 },
  { name: 'ports: another port is not', policies: [tcpPorts], conn: { destinationPort: 8000 }, allow: false },
  { name: 'notPorts: DENY every port but 8000', policies: [ap('foo', 'only-8000', { action: 'DENY', rules: [{ to: [{ operation: { notPorts: ['8000'] } }] }] })], conn: { destinationPort: 9000 }, req: 'tcp', allow: false, policy: 'foo/only-8000', rule: 0 },
  { name: 'methods prefix P* matches PUT', policies: [ap('foo', 'p', { rules: [{ to: [{ operation: { methods: ['P*'] } }] }] })], req: { method: 'PUT', path: '/' }, allow: true, policy: 'foo/p', rule: 0 },
  { name: 'notMethods: everything but GET is denied', policies: [ap('foo', 'read-only', { action: 'DENY', rules: [{ to: [{ operation: { notMethods: ['GET', 'HEAD'] } }] }] })], req: POST('/x'), allow: false, policy: 'foo/read-only', rule: 0 },
  // --- HTTP-only fields on plain TCP -----------------------------------------------------------------
  { name: 'task "TCP traffic": ALLOW ports 9000,9001 allows TCP on 9000', policies: [tcpPorts], conn: { destinationPort: 9000 }, req: 'tcp', allow: true, policy: 'foo/tcp-policy', rule: 0 },
  { name: 'task "TCP traffic": ALLOW rule with methods is dropped on TCP, so TCP on 9000 is denied', policies: [tcpPortsWithMethods], conn: { destinationPort: 9000 }, req: 'tcp', allow: false, reason: /HTTP-only fields match nothing on plain TCP/ },
  { name: 'task "TCP traffic": the same ALLOW rule still allows an HTTP GET on 9000', policies: [tcpPortsWithMethods], conn: { destinationPort: 9000 }, req: GET('/'), allow: true, policy: 'foo/tcp-policy', rule: 0 },
  { name: 'task "TCP traffic": DENY rule with methods drops them on TCP and denies all of 9000', policies: [tcpDenyWithMethods], conn: { destinationPort: 9000 }, req: 'tcp', allow: false, policy: 'foo/tcp-policy', rule: 0, reason: /matched: port 9000$/ },
  { name: 'task "TCP traffic": that DENY rule leaves TCP on other ports alone', policies: [tcpDenyWithMethods], conn: { destinationPort: 9001 }, req: 'tcp', allow: true },
  { name: 'task "TCP traffic": on HTTP that DENY rule denies GET on 9000 only', policies: [tcpDenyWithMethods], conn: { destinationPort: 9000 }, req: POST('/'), allow: true },
  {
    name: 'DENY with only HTTP fields in an operation matches every TCP connection (Istio: a wider deny)',
    policies: [ap('foo', 'deny-admin', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] })],
    req: 'tcp', allow: false, policy: 'foo/deny-admin', rule: 0,
  },
  {
    name: 'DENY with a request.headers condition drops the condition on TCP and keeps the source',
    policies: [ap('foo', 'deny-dev-header', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['dev'] } }], when: [{ key: 'request.headers[x-debug]', values: ['1'] }] }] })],
    conn: from('default'), req: 'tcp', allow: true,
  },
  {
    name: 'ALLOW with a request.headers condition matches nothing on TCP',
    policies: [ap('foo', 'allow-header', { rules: [{ when: [{ key: 'request.headers[x-token]', values: ['*'] }] }] })],
    req: 'tcp', allow: false,
  },
  {
    name: 'an ALLOW rule with HTTP fields is dropped alone: another rule of the policy still allows TCP',
    policies: [ap('foo', 'mixed', { rules: [{ to: [{ operation: { methods: ['GET'] } }] }, { to: [{ operation: { ports: ['8000'] } }] }] })],
    req: 'tcp', allow: true, policy: 'foo/mixed', rule: 1,
  },
  // --- principals, namespaces and plaintext clients ----------------------------------------------------
  { name: 'principals: exact match without spiffe://', policies: [ap('foo', 'p', { rules: [{ from: [{ source: { principals: ['cluster.local/ns/default/sa/sleep'] } }] }] })], allow: true, policy: 'foo/p', rule: 0 },
  { name: 'principals: prefix cluster.local/ns/default/*', policies: [ap('foo', 'p', { rules: [{ from: [{ source: { principals: ['cluster.local/ns/default/*'] } }] }] })], conn: from('default', 'other'), allow: true, policy: 'foo/p', rule: 0 },
  { name: 'principals: suffix */sa/sleep', policies: [ap('foo', 'p', { rules: [{ from: [{ source: { principals: ['*/sa/sleep'] } }] }] })], conn: from('prod', 'sleep'), allow: true, policy: 'foo/p', rule: 0 },
  { name: 'principals: presence * matches any mTLS client', policies: [ap('foo', 'p', { rules: [{ from: [{ source: { principals: ['*'] } }] }] })], req: 'tcp', allow: true, policy: 'foo/p', rule: 0 },
  { name: 'principals: presence * does not match a plaintext client', policies: [ap('foo', 'p', { rules: [{ from: [{ source: { principals: ['*'] } }] }] })], conn: plaintext(), allow: false },
  { name: 'reference "require mTLS": DENY notPrincipals ["*"] denies a plaintext client', policies: [ap('foo', 'require-mtls', { action: 'DENY', rules: [{ from: [{ source: { notPrincipals: ['*'] } }] }] })], conn: plaintext(), req: 'tcp', allow: false, policy: 'foo/require-mtls', rule: 0, reason: /principal none \(plaintext client\)/ },
  { name: 'reference "require mTLS": the same DENY lets an mTLS client through', policies: [ap('foo', 'require-mtls', { action: 'DENY', rules: [{ from: [{ source: { notPrincipals: ['*'] } }] }] })], req: 'tcp', allow: true },
  { name: 'notPrincipals matches a plaintext client (an absent value is not among them)', policies: [ap('foo', 'p', { rules: [{ from: [{ source: { notPrincipals: ['cluster.local/ns/default/sa/sleep'] } }] }] })], conn: plaintext(), allow: true, policy: 'foo/p', rule: 0 },
  { name: 'namespaces does not match a plaintext client', policies: [ap('foo', 'ns', { rules: [{ from: [{ source: { namespaces: ['*'] } }] }] })], conn: plaintext(), allow: false },
  { name: 'notNamespaces matches a plaintext client', policies: [ap('foo', 'ns', { rules: [{ from: [{ source: { notNamespaces: ['dev'] } }] }] })], conn: plaintext(), allow: true, policy: 'foo/ns', rule: 0 },
  { name: 'namespaces come from the certificate, not the source address', policies: [ap('foo', 'ns', { rules: [{ from: [{ source: { namespaces: ['default'] } }] }] })], conn: { sourceIp: '10.9.9.9' }, allow: true, policy: 'foo/ns', rule: 0 },
  { name: 'namespaces prefix pro* matches prod', policies: [ap('foo', 'ns', { rules: [{ from: [{ source: { namespaces: ['pro*'] } }] }] })], conn: from('prod'), allow: true, policy: 'foo/ns', rule: 0 },
  { name: 'source fields are ANDed: principal ok but namespace wrong is no match', policies: [ap('foo', 'and', { rules: [{ from: [{ source: { principals: ['*'], namespaces: ['prod'] } }] }] })], allow: false },
  // --- ipBlocks ----------------------------------------------------------------------------------------
  { name: 'ipBlocks: a single address', policies: [ipAllow], conn: { sourceIp: '1.2.3.4' }, allow: true, policy: 'foo/ingress-policy', rule: 0 },
  { name: 'ipBlocks: inside a v4 CIDR', policies: [ipAllow], conn: { sourceIp: '5.6.7.200' }, allow: true, policy: 'foo/ingress-policy', rule: 0 },
  { name: 'ipBlocks: outside the v4 CIDR', policies: [ipAllow], conn: { sourceIp: '5.6.8.1' }, allow: false },
  { name: 'ipBlocks: inside a v6 CIDR', policies: [ipAllow], conn: { sourceIp: 'fd00:1::abcd' }, allow: true, policy: 'foo/ingress-policy', rule: 0 },
  { name: 'ipBlocks: outside the v6 CIDR', policies: [ipAllow], conn: { sourceIp: 'fd00:2::1' }, allow: false },
  { name: 'notIpBlocks: DENY everything outside 10.0.0.0/8', policies: [ap('foo', 'internal', { action: 'DENY', rules: [{ from: [{ source: { notIpBlocks: ['10.0.0.0/8'] } }] }] })], conn: { sourceIp: '192.168.1.1' }, req: 'tcp', allow: false, policy: 'foo/internal', rule: 0 },
  { name: 'notIpBlocks: an address inside passes', policies: [ap('foo', 'internal', { action: 'DENY', rules: [{ from: [{ source: { notIpBlocks: ['10.0.0.0/8'] } }] }] })], req: 'tcp', allow: true },
  { name: 'remoteIpBlocks: the remote address is the client\'s own (no X-Forwarded-For is trusted)', policies: [ap('foo', 'remote', { rules: [{ from: [{ source: { remoteIpBlocks: ['10.0.0.0/24'] } }] }] })], req: GET('/', { headers: { 'x-forwarded-for': '8.8.8.8' } }), allow: true, policy: 'foo/remote', rule: 0 },
  { name: 'a /0 block matches every IPv4 address', policies: [ap('foo', 'any-v4', { rules: [{ from: [{ source: { ipBlocks: ['0.0.0.0/0'] } }] }] })], conn: { sourceIp: '203.0.113.9' }, allow: true, policy: 'foo/any-v4', rule: 0 },
  { name: 'a v4 block never matches a v6 client', policies: [ap('foo', 'any-v4', { rules: [{ from: [{ source: { ipBlocks: ['0.0.0.0/0'] } }] }] })], conn: { sourceIp: 'fd00::5' }, allow: false },
  // --- when conditions ---------------------------------------------------------------------------------
  { name: 'reference condition request.headers[version] in [v1, v2]', policies: [ap('foo', 'hdr', { rules: [{ when: [{ key: 'request.headers[version]', values: ['v1', 'v2'] }] }] })], req: GET('/', { headers: { version: 'v2' } }), allow: true, policy: 'foo/hdr', rule: 0 },
  { name: 'request.headers: header name is case-insensitive in the key', policies: [ap('foo', 'hdr', { rules: [{ when: [{ key: 'request.headers[X-Version]', values: ['v1'] }] }] })], req: GET('/', { headers: { 'x-version': 'v1' } }), allow: true, policy: 'foo/hdr', rule: 0 },
  { name: 'request.headers: an absent header does not match values', policies: [ap('foo', 'hdr', { rules: [{ when: [{ key: 'request.headers[version]', values: ['*'] }] }] })], req: GET('/'), allow: false },
  { name: 'request.headers: notValues over an absent header holds', policies: [ap('foo', 'hdr', { rules: [{ when: [{ key: 'request.headers[version]', notValues: ['v3'] }] }] })], req: GET('/'), allow: true, policy: 'foo/hdr', rule: 0 },
  { name: 'request.headers: a repeated header is joined with ","', policies: [ap('foo', 'hdr', { rules: [{ when: [{ key: 'request.headers[x-a]', values: ['1,2'] }] }] })], req: GET('/', { headers: { 'x-a': ['1', '2'] } }), allow: true, policy: 'foo/hdr', rule: 0 },
  { name: 'reference condition source.ip notValues 10.1.2.3', policies: [ap('foo', 'ip', { rules: [{ when: [{ key: 'source.ip', notValues: ['10.1.2.3'] }] }] })], conn: { sourceIp: '10.1.2.3' }, allow: false },
  { name: 'source.ip CIDR values', policies: [ap('foo', 'ip', { rules: [{ when: [{ key: 'source.ip', values: ['10.0.0.0/16'] }] }] })], allow: true, policy: 'foo/ip', rule: 0 },
  { name: 'source.namespace condition', policies: [ap('foo', 'nsc', { rules: [{ when: [{ key: 'source.namespace', values: ['default'] }] }] })], req: 'tcp', allow: true, policy: 'foo/nsc', rule: 0 },
  { name: 'source.principal condition with notValues', policies: [ap('foo', 'pc', { action: 'DENY', rules: [{ when: [{ key: 'source.principal', notValues: ['cluster.local/ns/foo/*'] }] }] })], req: 'tcp', allow: false, policy: 'foo/pc', rule: 0 },
  { name: 'destination.port condition', policies: [ap('foo', 'dp', { rules: [{ when: [{ key: 'destination.port', values: ['8000'] }] }] })], req: 'tcp', allow: true, policy: 'foo/dp', rule: 0 },
  { name: 'destination.ip condition', policies: [ap('foo', 'dip', { rules: [{ when: [{ key: 'destination.ip', values: ['10.0.1.0/24'] }] }] })], req: 'tcp', allow: true, policy: 'foo/dip', rule: 0 },
  { name: 'connection.sni condition matches the SNI sent', policies: [ap('foo', 'sni', { rules: [{ when: [{ key: 'connection.sni', values: ['*.foo.svc.cluster.local'] }] }] })], conn: { sni: 'httpbin.foo.svc.cluster.local' }, req: 'tcp', allow: true, policy: 'foo/sni', rule: 0 },
  { name: 'connection.sni condition: no SNI sent is no match', policies: [ap('foo', 'sni', { rules: [{ when: [{ key: 'connection.sni', values: ['*'] }] }] })], req: 'tcp', allow: false },
  { name: 'when conditions are ANDed', policies: [ap('foo', 'and', { rules: [{ when: [{ key: 'destination.port', values: ['8000'] }, { key: 'source.namespace', values: ['prod'] }] }] })], allow: false },
  { name: 'from, to and when are ANDed within a rule', policies: [ap('foo', 'and', { rules: [{ from: [{ source: { namespaces: ['default'] } }], to: [{ operation: { methods: ['GET'] } }], when: [{ key: 'request.headers[x-ok]', values: ['yes'] }] }] })], req: GET('/'), allow: false },
  { name: 'values and notValues of one condition are ANDed', policies: [ap('foo', 'vn', { rules: [{ when: [{ key: 'source.ip', values: ['10.0.0.0/8'], notValues: ['10.0.0.5'] }] }] })], allow: false },
];

describe('authorize: Istio AuthorizationPolicy semantics', () => {
  it(`has at least 70 cases (${cases.length})`, () => assert.ok(cases.length >= 70));
  for (const c of cases) {
    it(c.name, () => {
      const set = new PolicySet(c.policies);
      const conn: ConnectionFacts = { ...CONN, ...c.conn };
      if (c.conn && 'sourcePrincipal' in c.conn && c.conn.sourcePrincipal === undefined) delete conn.sourcePrincipal;
      const request = c.req === 'tcp' ? undefined : { ...GET_INFO, ...c.req };
      const d = set.decide(c.workload ?? HTTPBIN, conn, request);
      const shown = JSON.stringify(d);
      assert.equal(d.allow, c.allow, shown);
      assert.equal(d.policy, c.policy, shown);
      assert.equal(d.rule, c.rule, shown);
      assert.deepEqual(d.audit, c.audit, shown);
      assert.ok(d.reason.length > 0);
      if (c.reason) assert.match(d.reason, c.reason);
    });
  }
});

describe('PolicySet', () => {
  it('forWorkload is cached per namespace and labels, whatever the label order', () => {
    const set = new PolicySet([allowRead, denyAll]);
    const a = set.forWorkload({ namespace: 'foo', labels: { app: 'httpbin', version: 'v1' } });
    const b = set.forWorkload({ namespace: 'foo', labels: { version: 'v1', app: 'httpbin' } });
    assert.equal(a, b);
    assert.deepEqual(a.allow.map((p) => p.key), ['foo/httpbin']);
    assert.deepEqual(a.deny.map((p) => p.key), ['foo/deny-all']);
  });

  it('a workload is offered only the policies that select it, out of many', () => {
    const many = Array.from({ length: 500 }, (_, i) => ap(`ns-${i % 50}`, `p-${i}`, { selector: { matchLabels: { app: `app-${i}` } }, rules: [{}] }));
    const set = new PolicySet([...many, allowRead]);
    const applicable = set.forWorkload(HTTPBIN);
    assert.deepEqual([...applicable.allow, ...applicable.deny, ...applicable.audit].map((p) => p.key), ['foo/httpbin']);
  });

  it('authorize is pure: the same facts give the same decision, the inputs are untouched', () => {
    const set = new PolicySet([allowRead, denyDevPost, auditProfile]);
    const applicable = set.forWorkload(HTTPBIN);
    const conn = { ...CONN };
    const req = { ...GET_INFO, headers: { a: 'b' } };
    const first = set.authorize(applicable, conn, req);
    assert.deepEqual(set.authorize(applicable, conn, req), first);
    assert.deepEqual(conn, CONN);
    assert.deepEqual(req, { ...GET_INFO, headers: { a: 'b' } });
  });
});
