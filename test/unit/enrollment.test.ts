import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { emptySnapshot, type MtlsMode, type PeerAuthenticationInfo, type PodInfo, type Snapshot } from '../../agent/config/objects';
import { desiredEnrollment, isEnrolled, mtlsModeFor, mtlsModeForPort, podUidsToResolve, type CgroupLookup } from '../../agent/state/enrollment';

function pod(name: string, over: Partial<PodInfo> = {}): PodInfo {
  return {
    namespace: 'shop', name, labels: { app: name }, annotations: {}, nodeName: 'node-a', serviceAccount: 'default',
    ips: ['10.0.0.1'], cgroupPath: `/sys/fs/cgroup/weft/${name}`, ...over,
  };
}

const meshNs = (name: string) => ({ name, labels: { 'weft.dev/mesh': 'enabled' } });

function pa(namespace: string, name: string, mode: MtlsMode, matchLabels?: Record<string, string>, portLevel: Record<number, MtlsMode> = {}): PeerAuthenticationInfo {
  return { namespace, name, mode, portLevel, ...(matchLabels ? { matchLabels } : {}) };
}

function withPolicies(...peerAuthentications: PeerAuthenticationInfo[]): Snapshot {
  return { ...emptySnapshot(), peerAuthentications };
}

describe('isEnrolled', () => {
  it('needs the namespace opt-in label', () => {
    assert.equal(isEnrolled(pod('web'), meshNs('shop')), true);
    assert.equal(isEnrolled(pod('web'), { name: 'shop', labels: {} }), false);
    assert.equal(isEnrolled(pod('web'), { name: 'shop', labels: { 'weft.dev/mesh': 'disabled' } }), false);
    assert.equal(isEnrolled(pod('web'), undefined), false);
  });

  it('honours the pod opt-out label', () => {
    assert.equal(isEnrolled(pod('web', { labels: { 'weft.dev/mesh': 'disabled' } }), meshNs('shop')), false);
    assert.equal(isEnrolled(pod('web', { labels: { 'weft.dev/mesh': 'enabled' } }), meshNs('shop')), true);
  });
});

describe('mtlsModeFor: PeerAuthentication precedence', () => {
  const web = pod('web');
  const table: [string, PeerAuthenticationInfo[], 'STRICT' | 'PERMISSIVE'][] = [
    ['no policy: PERMISSIVE', [], 'PERMISSIVE'],
    ['mesh-wide STRICT applies', [pa('weft-system', 'mesh', 'STRICT')], 'STRICT'],
    ['namespace beats mesh', [pa('weft-system', 'mesh', 'STRICT'), pa('shop', 'ns', 'PERMISSIVE')], 'PERMISSIVE'],
    ['workload beats namespace', [pa('shop', 'ns', 'PERMISSIVE'), pa('shop', 'w', 'STRICT', { app: 'web' })], 'STRICT'],
    ['workload beats namespace (other way)', [pa('shop', 'ns', 'STRICT'), pa('shop', 'w', 'PERMISSIVE', { app: 'web' })], 'PERMISSIVE'],
    ['workload UNSET inherits namespace', [pa('shop', 'ns', 'STRICT'), pa('shop', 'w', 'UNSET', { app: 'web' })], 'STRICT'],
    ['namespace UNSET inherits mesh', [pa('weft-system', 'mesh', 'STRICT'), pa('shop', 'ns', 'UNSET')], 'STRICT'],
    ['UNSET all the way: PERMISSIVE', [pa('weft-system', 'mesh', 'UNSET'), pa('shop', 'ns', 'UNSET')], 'PERMISSIVE'],
    ['DISABLE counts as PERMISSIVE', [pa('weft-system', 'mesh', 'STRICT'), pa('shop', 'ns', 'DISABLE')], 'PERMISSIVE'],
    ['selector not matching is ignored', [pa('shop', 'w', 'STRICT', { app: 'db' })], 'PERMISSIVE'],
    ['other namespace is ignored', [pa('other', 'ns', 'STRICT'), pa('other', 'w', 'STRICT', { app: 'web' })], 'PERMISSIVE'],
    ['selector in root namespace is not mesh-wide', [pa('weft-system', 'w', 'STRICT', { app: 'web' })], 'PERMISSIVE'],
    ['same level: first by name wins', [pa('shop', 'b', 'PERMISSIVE'), pa('shop', 'a', 'STRICT')], 'STRICT'],
    ['same level workload: first by name wins', [pa('shop', 'z', 'PERMISSIVE', { app: 'web' }), pa('shop', 'm', 'STRICT', { app: 'web' })], 'STRICT'],
  ];
  for (const [name, policies, expected] of table) {
    it(name, () => assert.equal(mtlsModeFor(web, withPolicies(...policies)), expected));
  }

  it('applies a root-namespace policy to root-namespace pods too', () => {
    assert.equal(mtlsModeFor(pod('ctl', { namespace: 'weft-system' }), withPolicies(pa('weft-system', 'mesh', 'STRICT'))), 'STRICT');
  });
});

describe('mtlsModeForPort: portLevelMtls', () => {
  const web = pod('web');
  const snapshot = withPolicies(
    pa('weft-system', 'mesh', 'STRICT'),
    pa('shop', 'w', 'UNSET', { app: 'web' }, { 8080: 'PERMISSIVE', 9090: 'STRICT', 7070: 'UNSET', 6060: 'DISABLE' }),
    pa('shop', 'ns', 'PERMISSIVE'),
  );

  it('a port entry overrides the workload mode', () => {
    assert.equal(mtlsModeForPort(web, 8080, snapshot), 'PERMISSIVE');
    assert.equal(mtlsModeForPort(web, 9090, snapshot), 'STRICT');
    assert.equal(mtlsModeForPort(web, 6060, snapshot), 'PERMISSIVE');
  });

  it('other ports and UNSET entries inherit the pod mode', () => {
    assert.equal(mtlsModeFor(web, snapshot), 'PERMISSIVE');
    assert.equal(mtlsModeForPort(web, 7070, snapshot), 'PERMISSIVE');
    assert.equal(mtlsModeForPort(web, 443, snapshot), 'PERMISSIVE');
    const strictNs = withPolicies(pa('shop', 'ns', 'STRICT'), pa('shop', 'w', 'UNSET', { app: 'web' }, { 8080: 'PERMISSIVE', 7070: 'UNSET' }));
    assert.equal(mtlsModeForPort(web, 7070, strictNs), 'STRICT');
    assert.equal(mtlsModeForPort(web, 8080, strictNs), 'PERMISSIVE');
  });

  it('port entries of a policy that does not select the pod do not apply', () => {
    const db = pod('db');
    assert.equal(mtlsModeForPort(db, 9090, withPolicies(pa('shop', 'w', 'PERMISSIVE', { app: 'web' }, { 9090: 'STRICT' }))), 'PERMISSIVE');
  });
});

describe('desiredEnrollment', () => {
  const base: Snapshot = {
    ...emptySnapshot(),
    namespaces: [meshNs('shop'), { name: 'plain', labels: {} }],
    pods: [
      pod('web'),
      pod('api'),
      pod('remote', { nodeName: 'node-b' }),
      pod('outside', { namespace: 'plain' }),
      pod('opted-out', { labels: { 'weft.dev/mesh': 'disabled' } }),
      pod('nocgroup', { cgroupPath: undefined }),
    ],
    peerAuthentications: [pa('shop', 'strict-api', 'STRICT', { app: 'api' })],
  };

  it('enrolls local pods of mesh namespaces, sorted, with their mode', () => {
    const { pods } = desiredEnrollment(base, 'node-a');
    assert.deepEqual(
      pods.map((p) => [p.key, p.cgroupPath, p.mode]),
      [
        ['shop/api', '/sys/fs/cgroup/weft/api', 'STRICT'],
        ['shop/web', '/sys/fs/cgroup/weft/web', 'PERMISSIVE'],
      ],
    );
    assert.equal(pods[1].pod, base.pods[0]);
  });

  it('reports an enrolled pod without a cgroup instead of enrolling it', () => {
    const { problems } = desiredEnrollment(base, 'node-a');
    assert.equal(problems.length, 1);
    assert.match(problems[0], /^Pod shop\/nocgroup .*weft\.dev\/cgroup/);
  });

  it('without a cgroup path, finds the pod by UID in what the node resolved', () => {
    const uid = '6de31acc-3b6d-4fe3-bd53-2cc9ddcd1b0e';
    const kube: Snapshot = { ...base, pods: [...base.pods, pod('kube', { cgroupPath: undefined, uid })] };
    assert.deepEqual(podUidsToResolve(kube, 'node-a'), [uid]);
    const found = new Map<string, CgroupLookup>([[uid, { kind: 'found', path: '/sys/fs/cgroup/kubepods.slice/kubepods-pod6de31acc_3b6d_4fe3_bd53_2cc9ddcd1b0e.slice' }]]);
    const d = desiredEnrollment(kube, 'node-a', found);
    assert.deepEqual(d.pods.find((p) => p.key === 'shop/kube')?.cgroupPath, '/sys/fs/cgroup/kubepods.slice/kubepods-pod6de31acc_3b6d_4fe3_bd53_2cc9ddcd1b0e.slice');
    assert.deepEqual(d.pending, []);
  });

  it('a pod whose cgroup is not there yet is pending, not dropped and not a problem', () => {
    const uid = 'aaaaaaaa-0000-0000-0000-000000000001';
    const kube: Snapshot = { ...base, pods: [pod('kube', { cgroupPath: undefined, uid })] };
    const absent = new Map<string, CgroupLookup>([[uid, { kind: 'absent', reason: 'no cgroup yet' }]]);
    assert.deepEqual(desiredEnrollment(kube, 'node-a', absent), { pods: [], pending: [{ key: 'shop/kube', uid, reason: 'no cgroup yet' }], problems: [] });
    const notLookedUp = desiredEnrollment(kube, 'node-a');
    assert.equal(notLookedUp.pending.length, 1, 'a UID nobody looked up yet waits too');
    const invalid = new Map<string, CgroupLookup>([[uid, { kind: 'invalid', reason: 'pod UID matches 2 cgroups' }]]);
    const d = desiredEnrollment(kube, 'node-a', invalid);
    assert.deepEqual([d.pods, d.pending], [[], []]);
    assert.match(d.problems[0]!, /^Pod shop\/kube: pod UID matches 2 cgroups; it is not enrolled/);
  });

  it('a cgroup path wins over the UID; UIDs of remote, unenrolled or annotated pods are not looked up', () => {
    const kube: Snapshot = {
      ...base,
      pods: [
        pod('annotated', { uid: 'u-1' }),
        pod('remote', { nodeName: 'node-b', cgroupPath: undefined, uid: 'u-2' }),
        pod('outside', { namespace: 'plain', cgroupPath: undefined, uid: 'u-3' }),
        pod('local', { cgroupPath: undefined, uid: 'u-4' }),
      ],
    };
    assert.deepEqual(podUidsToResolve(kube, 'node-a'), ['u-4']);
    const d = desiredEnrollment(kube, 'node-a', new Map([['u-1', { kind: 'found', path: '/elsewhere' }]]));
    assert.equal(d.pods.find((p) => p.key === 'shop/annotated')?.cgroupPath, '/sys/fs/cgroup/weft/annotated');
  });

  it('another node sees only its own pods', () => {
    assert.deepEqual(desiredEnrollment(base, 'node-b').pods.map((p) => p.key), ['shop/remote']);
    assert.deepEqual(desiredEnrollment(base, 'node-c'), { pods: [], pending: [], problems: [] });
  });

  it('relabelling the namespace or the pod changes enrollment', () => {
    const optedIn: Snapshot = { ...base, namespaces: [meshNs('shop'), meshNs('plain')] };
    assert.ok(desiredEnrollment(optedIn, 'node-a').pods.some((p) => p.key === 'plain/outside'));
    const optedOut: Snapshot = { ...base, namespaces: [{ name: 'shop', labels: {} }] };
    assert.deepEqual(desiredEnrollment(optedOut, 'node-a'), { pods: [], pending: [], problems: [] });
    const webOut: Snapshot = { ...base, pods: base.pods.map((p) => (p.name === 'web' ? { ...p, labels: { ...p.labels, 'weft.dev/mesh': 'disabled' } } : p)) };
    assert.deepEqual(desiredEnrollment(webOut, 'node-a').pods.map((p) => p.key), ['shop/api']);
  });
});
