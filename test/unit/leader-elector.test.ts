/**
 * LeaderElector (agent/controlplane/leader-elector.ts) over an in-memory Lease store with the API
 * server's concurrency rule (a replace must carry the current resourceVersion, else 409; a create
 * of an existing Lease is 409), with short timings, for the paths the real API server cannot be
 * made to produce on demand: a leader cut off from the API server stops writing at its renew
 * deadline, before the other replica may take over. The real API server is in
 * test/integration/kube-leader.test.ts. Waits are for events (leadership changes), not durations.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { V1Lease } from '@kubernetes/client-node';
import { LeaderElector, type LeasesApi } from '../../agent/controlplane/leader-elector';

const TIMING = { leaseDurationMs: 1500, renewDeadlineMs: 1000, renewPeriodMs: 200, retryPeriodMs: 100 };
const WAIT_MS = 20_000;

class ApiError extends Error {
  constructor(readonly code: number, reason: string) {
    super(`HTTP ${code} ${reason}`);
    (this as unknown as { body: string }).body = JSON.stringify({ reason, message: reason });
  }
}

/** One Lease, stored as JSON, with resourceVersion checks; `cut` makes one caller's requests fail as if unreachable. */
function leaseStore(): { api(caller: string): LeasesApi; cut: Set<string>; current(): V1Lease | undefined; writes: string[] } {
  let stored: V1Lease | undefined;
  let version = 0;
  const cut = new Set<string>();
  const writes: string[] = [];
  const copy = (l: V1Lease): V1Lease => JSON.parse(JSON.stringify(l)) as V1Lease;
  const api = (caller: string): LeasesApi => {
    const reachable = async (): Promise<void> => {
      await sleep(1);
      if (cut.has(caller)) throw new Error('connect ECONNREFUSED 127.0.0.1:6443');
    };
    return {
      async readNamespacedLease() {
        await reachable();
        if (stored === undefined) throw new ApiError(404, 'NotFound');
        return copy(stored);
      },
      async createNamespacedLease({ body }: { body: V1Lease }) {
        await reachable();
        if (stored !== undefined) throw new ApiError(409, 'AlreadyExists');
        stored = copy({ ...body, metadata: { ...body.metadata, resourceVersion: String(++version) } });
        writes.push(`${caller} create`);
        return copy(stored);
      },
      async replaceNamespacedLease({ body }: { body: V1Lease }) {
        await reachable();
        if (stored === undefined) throw new ApiError(404, 'NotFound');
        if (body.metadata?.resourceVersion !== stored.metadata?.resourceVersion) throw new ApiError(409, 'Conflict');
        stored = copy({ ...body, metadata: { ...body.metadata, resourceVersion: String(++version) } });
        writes.push(`${caller} replace ${body.spec?.holderIdentity ?? ''}`);
        return copy(stored);
      },
    } as unknown as LeasesApi;
  };
  return { api, cut, current: () => stored && copy(stored), writes };
}

async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Every elector made, closed at the end whatever happened: a test that fails before its own close() must not leave timers that keep the file's process alive (CI hung there). */
const electors: LeaderElector[] = [];
after(() => Promise.all(electors.map((e) => e.close())));

function replica(store: ReturnType<typeof leaseStore>, identity: string): { elector: LeaderElector; changes: boolean[] } {
  const changes: boolean[] = [];
  const elector = new LeaderElector(store.api(identity), { namespace: 'weft-system', name: 'weft-controlplane', identity, timing: TIMING }, (leading) => changes.push(leading));
  electors.push(elector);
  return { elector, changes };
}

test('two electors on one Lease: exactly one leads, and keeps it while it renews', async () => {
  const store = leaseStore();
  const [a, b] = [replica(store, 'cp-a'), replica(store, 'cp-b')];
  a.elector.start();
  b.elector.start();
  await until('a leader', () => a.elector.leading || b.elector.leading);
  const [leader, follower] = a.elector.leading ? [a, b] : [b, a];
  const holder = store.current()!.spec!.holderIdentity;
  assert.equal(holder, a.elector.leading ? 'cp-a' : 'cp-b');
  // Several renewals later, still the same single leader.
  const rv = Number(store.current()!.metadata!.resourceVersion);
  await until('three renewals', () => Number(store.current()!.metadata!.resourceVersion) >= rv + 3);
  assert.equal(leader.elector.leading, true);
  assert.equal(follower.elector.leading, false);
  assert.deepEqual(follower.changes, []);
  assert.equal(store.current()!.spec!.holderIdentity, holder);
  await follower.elector.close();
  await leader.elector.close();
  assert.equal(store.current()!.spec!.holderIdentity, '', 'the leader released the Lease on close');
  assert.deepEqual(leader.changes, [true, false]);
});

test('a leader cut off from the API server stops writing at its renew deadline, before the other takes the Lease at expiry', async () => {
  const store = leaseStore();
  const a = replica(store, 'cp-a');
  a.elector.start();
  await until('cp-a leading', () => a.elector.leading);
  const b = replica(store, 'cp-b');
  b.elector.start();
  store.cut.add('cp-a');
  const order: string[] = [];
  a.changes.length = 0;
  const watchOrder = setInterval(() => {
    if (!a.elector.leading && !order.includes('a stopped')) order.push('a stopped');
    if (b.elector.leading && !order.includes('b leads')) order.push('b leads');
  }, 1);
  await until('cp-b leading', () => b.elector.leading);
  clearInterval(watchOrder);
  assert.deepEqual(a.changes, [false], 'cp-a stepped down without reaching the API server');
  assert.deepEqual(order, ['a stopped', 'b leads'], 'the old leader stopped before the new one started');
  assert.equal(store.current()!.spec!.holderIdentity, 'cp-b');
  assert.equal(store.current()!.spec!.leaseTransitions, 1);
  // Back in touch: cp-a sees cp-b's Lease and stays a follower.
  store.cut.delete('cp-a');
  const rv = Number(store.current()!.metadata!.resourceVersion);
  await until('cp-b renewing', () => Number(store.current()!.metadata!.resourceVersion) >= rv + 2);
  assert.equal(a.elector.leading, false);
  await a.elector.close();
  await b.elector.close();
});

test('a Lease taken by someone else makes the leader step down at its next renewal (409 or another holder)', async () => {
  const store = leaseStore();
  const a = replica(store, 'cp-a');
  a.elector.start();
  await until('cp-a leading', () => a.elector.leading);
  const thief = store.api('thief');
  const lease = await thief.readNamespacedLease({ namespace: 'weft-system', name: 'weft-controlplane' });
  await thief.replaceNamespacedLease({ namespace: 'weft-system', name: 'weft-controlplane', body: { ...lease, spec: { ...lease.spec, holderIdentity: 'thief', leaseDurationSeconds: 3600 } } });
  await until('cp-a stepping down', () => !a.elector.leading);
  assert.deepEqual(a.changes, [true, false]);
  await a.elector.close();
  assert.equal(store.current()!.spec!.holderIdentity, 'thief', 'a follower releases nothing on close');
});

test('a renew deadline not shorter than the lease is refused, naming both', () => {
  const store = leaseStore();
  assert.throws(() => new LeaderElector(store.api('x'), { namespace: 'n', name: 'l', identity: 'x', timing: { leaseDurationMs: 1000, renewDeadlineMs: 1000 } }, () => undefined),
    /the renew deadline \(1000 ms\) must be shorter than the lease \(1000 ms\)/);
});
