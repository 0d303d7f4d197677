/**
 * The leader elector's decisions (agent/controlplane/leader-decision.ts) and its flags
 * (leader-flags.ts), without an API server: given a Lease, when this replica first saw it, the time
 * and who it is, should it create, renew, acquire or follow; when must a leader stop writing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decideLease, observe, parseLeaseName, stillLeading, type LeaseDecision, type LeaseView } from '../../agent/controlplane/leader-decision';
import { leaderElectionFlags } from '../../agent/controlplane/leader-flags';

const timing = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000 };
const T = 1_000_000;
const lease = (holderIdentity: string | undefined, extra: Partial<LeaseView> = {}): LeaseView =>
  ({ resourceVersion: '7', leaseDurationSeconds: 15, leaseTransitions: 2, ...(holderIdentity !== undefined ? { holderIdentity } : {}), ...extra });

const CASES: { name: string; lease: LeaseView | undefined; observedAt: number; now: number; want: LeaseDecision }[] = [
  { name: 'no Lease: create it', lease: undefined, observedAt: T, now: T, want: { action: 'create' } },
  { name: 'ours: renew', lease: lease('cp-a'), observedAt: T, now: T + 1000, want: { action: 'renew' } },
  { name: 'ours though seen long ago (this replica restarted with its pod name): renew', lease: lease('cp-a'), observedAt: T - 60_000, now: T, want: { action: 'renew' } },
  { name: 'released (empty holder): acquire at once', lease: lease(''), observedAt: T, now: T, want: { action: 'acquire', previous: undefined, transitions: 3 } },
  { name: 'no holder field: acquire', lease: lease(undefined, { leaseTransitions: undefined }), observedAt: T, now: T, want: { action: 'acquire', previous: undefined, transitions: 1 } },
  { name: 'another holder, just seen: follow until it expires', lease: lease('cp-b'), observedAt: T, now: T, want: { action: 'follow', holder: 'cp-b', expiresAt: T + 15_000 } },
  { name: 'another holder, 1 ms before expiry: follow', lease: lease('cp-b'), observedAt: T, now: T + 14_999, want: { action: 'follow', holder: 'cp-b', expiresAt: T + 15_000 } },
  { name: 'another holder, unchanged for the whole lease: acquire', lease: lease('cp-b'), observedAt: T, now: T + 15_000, want: { action: 'acquire', previous: 'cp-b', transitions: 3 } },
  { name: 'the holder\'s own duration counts (30 s)', lease: lease('cp-b', { leaseDurationSeconds: 30 }), observedAt: T, now: T + 20_000, want: { action: 'follow', holder: 'cp-b', expiresAt: T + 30_000 } },
  { name: 'a nonsensical duration (0) counts as ours', lease: lease('cp-b', { leaseDurationSeconds: 0 }), observedAt: T, now: T + 15_000, want: { action: 'acquire', previous: 'cp-b', transitions: 3 } },
];

for (const c of CASES) {
  test(`decideLease: ${c.name}`, () => {
    assert.deepEqual(decideLease({ lease: c.lease, observedAt: c.observedAt, now: c.now, me: 'cp-a', timing }), c.want);
  });
}

test('observe: expiry counts from when this replica first saw a resourceVersion, never from the holder\'s renewTime (clock skew)', () => {
  const first = observe(undefined, lease('cp-b'), T);
  assert.deepEqual(first, { resourceVersion: '7', at: T });
  // Seen again unchanged: the time stays, so the lease can expire.
  assert.equal(observe(first, lease('cp-b'), T + 9000), first);
  // Renewed (a new resourceVersion): the count starts again.
  const renewed = observe(first, lease('cp-b', { resourceVersion: '8' }), T + 9000);
  assert.deepEqual(renewed, { resourceVersion: '8', at: T + 9000 });
  assert.equal(decideLease({ lease: lease('cp-b', { resourceVersion: '8' }), observedAt: renewed!.at, now: T + 16_000, me: 'cp-a', timing }).action, 'follow');
  assert.equal(observe(renewed, undefined, T + 10_000), undefined, 'deleted: nothing observed');
});

test('stillLeading: a leader stops writing once its last renewal is renewDeadline old, before a follower may take the lease', () => {
  assert.equal(stillLeading(T, T + 9_999, timing), true);
  assert.equal(stillLeading(T, T + 10_000, timing), false);
  // The follower cannot acquire before observedAt + 15 s, and observedAt >= the leader's renewal start.
  const followerAcquiresAt = T + timing.leaseDurationMs;
  assert.ok(!stillLeading(T, followerAcquiresAt, timing));
});

test('parseLeaseName: NAME in the default namespace, NAMESPACE/NAME, and bad names named', () => {
  assert.deepEqual(parseLeaseName('weft-controlplane', 'weft-system'), { ok: true, value: { namespace: 'weft-system', name: 'weft-controlplane' } });
  assert.deepEqual(parseLeaseName('mesh/cp.lease', 'weft-system'), { ok: true, value: { namespace: 'mesh', name: 'cp.lease' } });
  for (const [text, fault] of [['a/b/c', /is not NAME or NAMESPACE\/NAME/], ['Mesh/cp', /"Mesh" is not a namespace name/], ['mesh/cp_1', /"cp_1" is not a Lease name/], ['', /"" is not a Lease name/]] as const) {
    const r = parseLeaseName(text, 'weft-system');
    assert.ok(!r.ok, text);
    assert.match(r.error, fault);
    assert.match(r.error, /--lease-name/);
  }
});

test('leaderElectionFlags: on by default with Kubernetes, identity from POD_NAME and namespace from POD_NAMESPACE; off with --config; bad values named', () => {
  assert.deepEqual(leaderElectionFlags({ kube: true, leaderElect: undefined, leaseName: undefined, env: { POD_NAME: 'weft-controlplane-7d9f-abcde', POD_NAMESPACE: 'mesh' } }),
    { ok: true, value: { namespace: 'mesh', name: 'weft-controlplane', identity: 'weft-controlplane-7d9f-abcde' } });
  const noPod = leaderElectionFlags({ kube: true, leaderElect: 'true', leaseName: 'other', env: {} });
  assert.ok(noPod.ok && noPod.value);
  assert.equal(noPod.value.namespace, 'weft-system');
  assert.equal(noPod.value.name, 'other');
  const again = leaderElectionFlags({ kube: true, leaderElect: 'true', leaseName: 'other', env: {} });
  assert.ok(again.ok && again.value);
  assert.notEqual(noPod.value.identity, again.value.identity, 'two processes on one host without POD_NAME get different identities');
  assert.deepEqual(leaderElectionFlags({ kube: true, leaderElect: 'false', leaseName: undefined, env: {} }), { ok: true, value: undefined });
  assert.deepEqual(leaderElectionFlags({ kube: false, leaderElect: undefined, leaseName: undefined, env: {} }), { ok: true, value: undefined });
  for (const [input, fault] of [
    [{ kube: true, leaderElect: 'yes', leaseName: undefined }, /--leader-elect takes true or false \(got "yes"\)/],
    [{ kube: false, leaderElect: 'true', leaseName: undefined }, /--leader-elect is for the Kubernetes source/],
    [{ kube: false, leaderElect: undefined, leaseName: 'x' }, /--lease-name is for the Kubernetes source/],
    [{ kube: true, leaderElect: 'false', leaseName: 'x' }, /--lease-name with --leader-elect=false/],
    [{ kube: true, leaderElect: undefined, leaseName: 'A' }, /"A" is not a Lease name/],
  ] as const) {
    const r = leaderElectionFlags({ ...input, env: {} });
    assert.ok(!r.ok, JSON.stringify(input));
    assert.match(r.error, fault);
  }
});
