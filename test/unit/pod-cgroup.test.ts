import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import { parseConfig } from '../../agent/config/parse';
import { podInfo } from '../../agent/controlplane/discovery-kube-convert';
import { decodeVersionedSnapshot, encodeJson } from '../../agent/controlplane/discovery-wire';
import { emptySnapshot } from '../../agent/config/objects';
import {
  findKubepodsTrees, kubepodsTreeOf, podCgroupCandidates, PodCgroupResolver, resolvePodCgroup, systemdUid, type KubepodsTree,
} from '../../agent/redirect/pod-cgroup';

const UID = '6de31acc-3b6d-4fe3-bd53-2cc9ddcd1b0e';
const UID_ = '6de31acc_3b6d_4fe3_bd53_2cc9ddcd1b0e';
const CG = '/sys/fs/cgroup/unified';

const systemd = kubepodsTreeOf(`${CG}/kubepods.slice`)!;
const cgroupfs = kubepodsTreeOf(`${CG}/kubepods`)!;
/** kind: `--cgroup-root /kubelet` with the systemd driver, inside the node container's cgroup. */
const kind = kubepodsTreeOf(`${CG}/system.slice/docker-abc.scope/kubelet.slice/kubelet-kubepods.slice`)!;

const only = (...paths: string[]) => { const set = new Set(paths); return (p: string) => set.has(p); };

describe('kubepodsTreeOf: the kubelet tree by its name', () => {
  it('knows both drivers and a --cgroup-root prefix', () => {
    assert.deepEqual(systemd, { path: `${CG}/kubepods.slice`, driver: 'systemd', unitPrefix: 'kubepods' });
    assert.deepEqual(cgroupfs, { path: `${CG}/kubepods`, driver: 'cgroupfs', unitPrefix: 'kubepods' });
    assert.equal(kind.unitPrefix, 'kubelet-kubepods');
    assert.equal(kubepodsTreeOf(`${CG}/custom/kubepods`)?.driver, 'cgroupfs', 'cgroupfs under a --cgroup-root just moves');
  });

  it('does not take a QoS level, a pod or a look-alike for the tree', () => {
    for (const name of ['kubepods-burstable.slice', 'kubepods-besteffort.slice', `kubepods-pod${UID_}.slice`, 'burstable', 'kubepods2', 'mykubepods', 'kubepods.scope']) {
      assert.equal(kubepodsTreeOf(`${CG}/kubepods.slice/${name}`), undefined, name);
    }
  });
});

describe('resolvePodCgroup: every driver and QoS class', () => {
  const table: Array<[string, KubepodsTree, string, string]> = [
    ['systemd', systemd, 'Guaranteed', `${CG}/kubepods.slice/kubepods-pod${UID_}.slice`],
    ['systemd', systemd, 'Burstable', `${CG}/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice`],
    ['systemd', systemd, 'BestEffort', `${CG}/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice`],
    ['cgroupfs', cgroupfs, 'Guaranteed', `${CG}/kubepods/pod${UID}`],
    ['cgroupfs', cgroupfs, 'Burstable', `${CG}/kubepods/burstable/pod${UID}`],
    ['cgroupfs', cgroupfs, 'BestEffort', `${CG}/kubepods/besteffort/pod${UID}`],
    ['systemd', kind, 'Burstable', `${kind.path}/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod${UID_}.slice`],
    ['systemd', kind, 'Guaranteed', `${kind.path}/kubelet-kubepods-pod${UID_}.slice`],
  ];
  for (const [driver, tree, qos, path] of table) {
    it(`${driver} ${qos} under ${tree.path.slice(CG.length) || '/'}`, () => {
      assert.deepEqual(resolvePodCgroup(UID, [systemd, cgroupfs, kind], only(path)), { kind: 'found', path, driver, qos });
    });
  }

  it('lists the three QoS places per tree, dashes of the UID as underscores only for systemd', () => {
    assert.equal(systemdUid(UID), UID_);
    assert.deepEqual(podCgroupCandidates(systemd, UID).map((c) => c.path.slice(systemd.path.length + 1)), [
      `kubepods-pod${UID_}.slice`,
      `kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice`,
      `kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice`,
    ]);
    assert.deepEqual(podCgroupCandidates(cgroupfs, UID).map((c) => c.path.slice(cgroupfs.path.length + 1)), [
      `pod${UID}`, `burstable/pod${UID}`, `besteffort/pod${UID}`,
    ]);
  });

  it('a systemd tree does not match the UID spelled with dashes, nor cgroupfs with underscores', () => {
    assert.equal(resolvePodCgroup(UID, [systemd], only(`${CG}/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID}.slice`)).kind, 'absent');
    assert.equal(resolvePodCgroup(UID, [cgroupfs], only(`${CG}/kubepods/burstable/pod${UID_}`)).kind, 'absent');
  });

  it('a static pod\'s hash UID (hex, no dashes) resolves the same way', () => {
    const hash = '2c5a9a5d0c1a6b0f9e3c4d1e2f3a4b5c';
    const path = `${CG}/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${hash}.slice`;
    assert.equal(resolvePodCgroup(hash, [systemd], only(path)).kind, 'found');
  });

  it('not there (yet) is absent, naming where it looked', () => {
    const r = resolvePodCgroup(UID, [systemd], only());
    assert.equal(r.kind, 'absent');
    assert.match(r.kind === 'absent' ? r.reason : '', new RegExp(`no cgroup for pod UID ${UID} yet under ${systemd.path}`));
    assert.equal(resolvePodCgroup(UID, [], only()).kind, 'absent', 'no kubelet tree yet either');
  });

  it('two matches are refused, not guessed', () => {
    const r = resolvePodCgroup(UID, [systemd, cgroupfs], only(
      `${CG}/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice`,
      `${CG}/kubepods/besteffort/pod${UID}`,
    ));
    assert.equal(r.kind, 'invalid');
    assert.match(r.kind === 'invalid' ? r.reason : '', /matches 2 cgroups .*refusing to guess/);
    const sameTree = resolvePodCgroup(UID, [systemd], only(
      `${CG}/kubepods.slice/kubepods-pod${UID_}.slice`,
      `${CG}/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice`,
    ));
    assert.equal(sameTree.kind, 'invalid');
  });

  it('a UID that could escape or alias a path is invalid before any lookup', () => {
    for (const bad of ['', '../etc', 'a/b', 'a_b', '.', '-abc', 'abc-', 'x'.repeat(200)]) {
      const r = resolvePodCgroup(bad, [systemd], () => { throw new Error(`looked up a path for ${JSON.stringify(bad)}`); });
      assert.equal(r.kind, 'invalid', JSON.stringify(bad));
    }
  });
});

describe('findKubepodsTrees and PodCgroupResolver (a directory tree standing in for cgroupfs)', () => {
  const root = mkdtempSync(join(tmpdir(), 'weft-podcg-'));
  after(() => rmSync(root, { recursive: true, force: true }));
  const mk = (rel: string) => mkdirSync(join(root, rel), { recursive: true });

  it('finds trees at the top, nested a few levels down, and not inside a tree', () => {
    mk('kubepods.slice/kubepods-burstable.slice');
    mk('system.slice/docker-abc.scope/kubelet.slice/kubelet-kubepods.slice');
    mk('other/kubepods/burstable');
    mk('a/b/c/d/e/kubepods'); // deeper than MAX_TREE_DEPTH
    const found = findKubepodsTrees(root).map((t) => [t.path.slice(root.length + 1), t.driver]).sort();
    assert.deepEqual(found, [
      ['kubepods.slice', 'systemd'],
      ['other/kubepods', 'cgroupfs'],
      ['system.slice/docker-abc.scope/kubelet.slice/kubelet-kubepods.slice', 'systemd'],
    ]);
    assert.deepEqual(findKubepodsTrees(join(root, 'kubepods.slice')).map((t) => t.path), [join(root, 'kubepods.slice')], 'the search root may be the tree itself');
    assert.deepEqual(findKubepodsTrees(join(root, 'missing')), []);
  });

  it('resolves a pod once its directory appears; looks for new trees again only after a while', () => {
    let now = 0;
    const dir = join(root, 'late');
    mkdirSync(dir);
    const resolver = new PodCgroupResolver(dir, () => now);
    const first = resolver.resolve(UID);
    assert.equal(first.kind, 'absent');
    assert.match(first.kind === 'absent' ? first.reason : '', new RegExp(`no kubelet cgroup tree .* under ${dir}`));

    const podDir = join(dir, 'kubepods', 'besteffort', `pod${UID}`);
    mkdirSync(podDir, { recursive: true });
    now = 1_000;
    assert.equal(resolver.resolve(UID).kind, 'absent', 'the tree is searched for again at most every 5 s');
    now = 6_000;
    assert.deepEqual(resolver.resolve(UID), { kind: 'found', path: podDir, driver: 'cgroupfs', qos: 'BestEffort' });

    const other = '11111111-2222-3333-4444-555555555555';
    const otherDir = join(dir, 'kubepods', `pod${other}`);
    assert.equal(resolver.resolve(other).kind, 'absent');
    mkdirSync(otherDir);
    assert.deepEqual(resolver.resolveAll([other, other, UID]), new Map<string, unknown>([
      [other, { kind: 'found', path: otherDir, driver: 'cgroupfs', qos: 'Guaranteed' }],
      [UID, { kind: 'found', path: podDir, driver: 'cgroupfs', qos: 'BestEffort' }],
    ]), 'a known tree is looked into on every call: a new pod there needs no new search');
  });
});

describe('the pod UID travels from the edges to the agent', () => {
  const kubePod = (metadata: V1Pod['metadata']): V1Pod => ({ metadata: { name: 'web-1', namespace: 'shop', ...metadata }, spec: { nodeName: 'node-a', containers: [] }, status: { phase: 'Running', podIP: '10.0.0.1' } });

  it('Kubernetes: metadata.uid; for a static pod\'s mirror, the static pod\'s UID the kubelet names the cgroup after', () => {
    assert.equal(podInfo(kubePod({ uid: UID }))?.uid, UID);
    assert.equal(podInfo(kubePod({ uid: UID, annotations: { 'kubernetes.io/config.mirror': 'a1b2c3' } }))?.uid, 'a1b2c3');
    assert.equal(podInfo(kubePod({}))?.cgroupPath, undefined);
    assert.equal('uid' in podInfo(kubePod({}))!, false);
  });

  it('the discovery stream carries it unchanged', () => {
    const snapshot = { ...emptySnapshot(), pods: [podInfo(kubePod({ uid: UID }))!] };
    const decoded = decodeVersionedSnapshot(encodeJson({ version: 1, snapshot }));
    assert.ok(decoded.ok);
    assert.equal(decoded.value.snapshot.pods[0]!.uid, UID);
  });

  const filePod = (metadata: string) =>
    `apiVersion: v1\nkind: Pod\nmetadata: ${metadata}\nspec: { nodeName: n }\nstatus: { podIP: 10.0.0.1 }\n`;

  it('config file: an optional metadata.uid, checked; unknown fields are still rejected', () => {
    const withUid = parseConfig(filePod(`{ name: web, uid: ${UID} }`), 't.yaml');
    assert.ok(withUid.ok);
    assert.equal(withUid.value.pods[0]!.uid, UID);
    assert.equal(withUid.value.pods[0]!.cgroupPath, undefined);
    const without = parseConfig(filePod('{ name: web }'), 't.yaml');
    assert.ok(without.ok);
    assert.equal('uid' in without.value.pods[0]!, false);

    const bad = parseConfig(filePod('{ name: web, uid: "../../etc" }'), 't.yaml');
    assert.ok(!bad.ok);
    assert.deepEqual(bad.error.map((e) => [e.object, e.field]), [['Pod default/web', 'metadata.uid']]);
    const unknown = parseConfig(filePod(`{ name: web, uid: ${UID}, podUid: x }`), 't.yaml');
    assert.ok(!unknown.ok);
    assert.deepEqual(unknown.error.map((e) => e.field), ['metadata.podUid']);
  });
});
