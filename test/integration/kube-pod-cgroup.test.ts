/**
 * Kubernetes-style pods on real cgroups and eBPF: pods known to the agent only by their UID (no
 * `weft.dev/cgroup` annotation), laid out as a kubelet does under the node's cgroup
 * (`kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice`,
 * `kubepods/pod<uid>`), with their processes in a container child cgroup
 * (`cri-containerd-<id>.scope`). The agent finds each pod cgroup from the UID and captures what
 * runs below it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, LabNode, LabPod, curl, startEchoServer, startHttpServer, tcpRequest, type ServerHandle } from '../../agent/sandbox';
import { podIp4 } from '../../agent/sandbox/addresses';
import { manifests, toYamlStream } from '../../agent/sandbox/manifests';
import { startLocalAgent, WEFT_CLI, type AgentHandle } from '../../agent/sandbox/weft-agent';
import { kernelTestBlocker } from '../support/requirements';

const blocker = kernelTestBlocker();

/** The address an echo server reported for its peer. */
const peerSeen = (stdout: string) => /peer=(.*):\d+/.exec(stdout)?.[1];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('Kubernetes mode: the agent resolves pod cgroups from pod UIDs', { skip: blocker ?? false }, () => {
  let lab: Lab, n1: LabNode, srv: LabPod, app: LabPod, plain: LabPod;
  let agent: AgentHandle;
  let dir: string, configPath: string, config: string;
  const servers: ServerHandle[] = [];
  const lateUid = randomUUID();
  let lateManifest: Record<string, unknown>;

  const admin = async (path: string) => JSON.parse((await n1.exec('curl', ['-s', `http://127.0.0.1:15000${path}`], { timeoutMs: 5000 })).stdout);
  const enrolled = async (): Promise<Array<{ pod: string; cgroupId: string }>> => admin('/workloads');

  before(async () => {
    if (blocker) return;
    lab = await Lab.create({ name: 'kubecg' });
    n1 = await lab.node('n1');
    srv = await n1.pod('srv', { namespace: 'mesh', serviceAccount: 'sa-srv', kubelet: { driver: 'cgroupfs', qos: 'guaranteed' } });
    app = await n1.pod('app', { namespace: 'mesh', serviceAccount: 'sa-app', kubelet: { driver: 'systemd', qos: 'burstable' } });
    plain = await n1.pod('plain', { namespace: 'outside', kubelet: { driver: 'systemd', qos: 'besteffort' } });
    // 'late' is in the config from the start, but its cgroup only appears once the test creates the
    // pod, as when the API shows a pod before the kubelet made its cgroup.
    lateManifest = manifests([], [{
      name: 'late', namespace: 'mesh', serviceAccount: 'default', labels: { app: 'late' }, nodeName: n1.name, hostIp: n1.ip,
      ip: podIp4(n1.index, n1.pods.length + 1), ip6: undefined, cgroupPath: '', uid: lateUid,
    }]).at(-1) as Record<string, unknown>;
    dir = mkdtempSync(join(tmpdir(), 'weft-kubecg-'));
    configPath = join(dir, 'mesh.yaml');
    config = toYamlStream([...lab.manifests({ meshNamespaces: ['mesh'] }), lateManifest]);
    assert.doesNotMatch(config, /weft\.dev\/cgroup/, 'the pods carry only their UIDs');
    writeFileSync(configPath, config);
    servers.push(startEchoServer(srv, 7000), startHttpServer(srv, 8080));
    await Promise.all(servers.map((s) => s.ready));
    agent = startLocalAgent(n1, configPath, ['--kubepods-cgroup', n1.cgroupPath]);
    await agent.ready;
  });

  after(async () => {
    if (blocker) return;
    await agent?.kill('SIGKILL');
    if (n1) spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', n1.name]);
    await lab?.close(); // removes the whole kubepods tree with the lab's cgroups, also after a failure
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the pods\' processes run in a container cgroup below the kubelet\'s pod cgroup', async () => {
    const r = await app.exec('cat', ['/proc/self/cgroup']);
    const own = r.stdout.split('\n').find((l) => l.startsWith('0::'))!.slice(3);
    assert.match(own, /\/kubepods\.slice\/kubepods-burstable\.slice\/kubepods-burstable-pod[0-9a-f_]{36}\.slice\/cri-containerd-[0-9a-f]{64}\.scope$/);
    assert.ok(app.processCgroupPath.endsWith(own), `${own} is not ${app.processCgroupPath}`);
    assert.ok(app.processCgroupPath.startsWith(`${app.cgroupPath}/`));
  });

  test('a pod known only by its UID is enrolled at its pod cgroup, by either cgroup driver', async () => {
    const byPod = new Map((await enrolled()).map((w) => [w.pod, w.cgroupId]));
    assert.equal(byPod.get('mesh/app'), app.cgroupId.toString(), 'systemd driver, Burstable: the pod-level cgroup, not the container');
    assert.equal(byPod.get('mesh/srv'), srv.cgroupId.toString(), 'cgroupfs driver, Guaranteed');
    assert.ok(!byPod.has('outside/plain'), 'a pod of an unlabelled namespace is not enrolled');
  });

  test('a connection from the container cgroup is captured; the access log names the pod', async () => {
    const r = await curl(app, `http://${srv.ip}:8080/hello`);
    assert.equal(r.status, 200, r.stderr);
    const body = JSON.parse(r.body);
    assert.equal(body.pod, 'srv');
    assert.equal(body.remoteAddress, app.ip, 'the destination sees its client (source preserved); the access-log line below shows it was steered');
    const line = await agent.waitForLog((l) => l['dst.addr'] === `${srv.ip}:8080` && l.direction === 'outbound');
    assert.equal(line['src.pod'], 'app', 'attributed by the enrolled pod cgroup the kernel recorded');
    assert.equal(line['src.namespace'], 'mesh');
    assert.equal(line['src.identity'], 'spiffe://cluster.local/ns/mesh/sa/sa-app');
  });

  test('a pod of an unlabelled namespace is not redirected outbound; its plaintext to an enrolled pod is captured inbound with its own address', async () => {
    const r = await tcpRequest(plain, srv.ip, 7000, { payload: 'x' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(peerSeen(r.stdout), plain.ip, 'the pod sees its client\'s own address');
    const line = await agent.waitForLog((l) => String(l['src.addr']).startsWith(`${plain.ip}:`));
    assert.equal(line.direction, 'inbound', 'captured at the destination (15006), not redirected at the source');
    assert.equal(line['src.identity'], undefined, 'a client outside the mesh has no identity');
  });

  test('a pod whose cgroup is not there yet is reported pending, then captured once it appears, without a config change', async () => {
    const redirect = await admin('/redirect');
    assert.deepEqual(redirect.pending.map((p: { key: string; uid: string }) => [p.key, p.uid]), [['mesh/late', lateUid]]);
    assert.match(agent.stderr(), /pod pending: its cgroup is not there yet/);
    assert.ok(!(await enrolled()).some((w) => w.pod === 'mesh/late'));

    const late = await n1.pod('late', { namespace: 'mesh', kubelet: { driver: 'systemd', qos: 'guaranteed', uid: lateUid } });
    const asBuilt = lab.manifests().find((o) => (o as { kind: string; metadata: { name: string } }).kind === 'Pod' && (o as { metadata: { name: string } }).metadata.name === 'late');
    assert.deepEqual(asBuilt, lateManifest, 'the config described this very pod before it existed');
    const appeared = Date.now();
    let cgroupId: string | undefined;
    while (cgroupId === undefined && Date.now() - appeared < 15_000) { // retries back off to 10 s
      cgroupId = (await enrolled()).find((w) => w.pod === 'mesh/late')?.cgroupId;
      if (cgroupId === undefined) await sleep(100);
    }
    assert.equal(cgroupId, late.cgroupId.toString(), 'enrolled by a retry');
    assert.deepEqual((await admin('/redirect')).pending, []);
    assert.equal(readFileSync(configPath, 'utf8'), config, 'the config file was not touched');

    const r = await tcpRequest(late, srv.ip, 7000, { payload: 'x' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(peerSeen(r.stdout), late.ip, 'the destination sees its client (source preserved)');
    await agent.waitForLog((l) => l['dst.addr'] === `${srv.ip}:7000` && l['src.pod'] === 'late' && l.direction === 'outbound'); // captured at the source
  });
});
