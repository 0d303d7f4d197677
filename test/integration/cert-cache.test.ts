/**
 * Workload certificates cached on disk across agent restarts (issue 12, point 1; docs/upgrade.md),
 * on real namespaces, cgroups and eBPF with `weft local` as a process: it issues certificates for
 * its pods; stopped and started again on the same data directory it serves them from the cache (its
 * CA logs no new "certificate issued" for them) and traffic works at once; with one cached file
 * corrupted, that identity alone is requested again and the warning names the file. Then the same
 * with `weft controlplane` and a successor `weft agent` started beside the running one (an upgrade):
 * the successor serves what its predecessor cached.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, LabNode, LabPod, curl } from '../../agent/sandbox';
import { CONTROL_PLANE_PORT, startControlPlane, startLocalAgent, startNodeAgent, WEFT_CLI, type AgentHandle } from '../../agent/sandbox/weft-agent';
import { CertCache, IDENTITIES_DIR } from '../../agent/identity/cert-cache';
import { kernelTestBlocker } from '../support/requirements';
import { startPeerLogServer, type PeerLogServer } from '../support/load-steady';

const blocker = kernelTestBlocker();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const CLIENT = 'spiffe://cluster.local/ns/shop/sa/sa-client';
const SERVER = 'spiffe://cluster.local/ns/shop/sa/sa-server';

/** The operational log's JSON lines. */
function logLines(agent: AgentHandle): Array<Record<string, unknown>> {
  return agent.stderr().split('\n').flatMap((l) => { try { return [JSON.parse(l) as Record<string, unknown>]; } catch { return []; } });
}

/** How many certificates the control plane's CA (component "ca") signed for `identity` in this process's log. */
function caIssued(agent: AgentHandle, identity: string): number {
  return logLines(agent).filter((l) => l.component === 'ca' && l.msg === 'certificate issued' && l.identity === identity).length;
}

async function waitFor(what: string, timeoutMs: number, condition: () => boolean, why: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}\n${why()}`);
    await sleep(50);
  }
}

describe('certificates cached across agent restarts', { skip: blocker ?? false }, () => {
  let lab: Lab, node: LabNode, client: LabPod, server: LabPod, node2: LabNode, client2: LabPod, server2: LabPod;
  let dir: string, configPath: string, agentDataDir: string;
  const peerServers: PeerLogServer[] = [];
  const started: AgentHandle[] = [];

  const start = async (): Promise<AgentHandle> => {
    const agent = startLocalAgent(node, configPath, ['--drain-grace', '1']);
    started.push(agent);
    await agent.ready;
    return agent;
  };
  const stop = async (agent: AgentHandle): Promise<void> => {
    const code = await agent.kill('SIGTERM');
    assert.equal(code, 0, `weft local stopped cleanly:\n${agent.stderr().slice(-2000)}`);
  };
  const url = () => `http://${server.ip}:8080/`;

  before(async () => {
    if (blocker) return;
    lab = await Lab.create({ name: 'cert12' });
    node = await lab.node('n1');
    client = await node.pod('client', { namespace: 'shop', serviceAccount: 'sa-client' });
    server = await node.pod('server', { namespace: 'shop', serviceAccount: 'sa-server', labels: { app: 'api' } });
    node2 = await lab.node('n2');
    client2 = await node2.pod('client2', { namespace: 'shop', serviceAccount: 'sa-client' });
    server2 = await node2.pod('server2', { namespace: 'shop', serviceAccount: 'sa-server', labels: { app: 'api2' } });
    dir = mkdtempSync(join(tmpdir(), 'weft-cert12-'));
    configPath = join(dir, 'mesh.yaml');
    // startLocalAgent's --data-dir; weft local keeps the agent's files in its agent/ subdirectory.
    agentDataDir = join(dir, `data-${node.name}`, 'agent');
    // STRICT: the server's node proxy admits only mTLS, so the mesh path needs the workload certificates.
    writeFileSync(configPath, lab.yaml({ meshNamespaces: ['shop'], extra: [
      { apiVersion: 'security.weft.dev/v1', kind: 'PeerAuthentication', metadata: { name: 'strict', namespace: 'shop' }, spec: { mtls: { mode: 'STRICT' } } },
    ] }));
    peerServers.push(startPeerLogServer(server, 8080), startPeerLogServer(server2, 8080));
    await Promise.all(peerServers.map((p) => p.ready));
  });

  after(async () => {
    if (blocker) return;
    for (const a of started) await a.kill('SIGKILL').catch(() => undefined);
    for (const n of [node, node2]) if (n) spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', n.name]);
    for (const p of peerServers) await p.stop();
    await lab?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a restart serves the cached certificates (no new issuance, traffic at once); a corrupted file is requested again and named', async () => {
    // 1. First start: both identities issued by the CA and cached, 0600 in a 0700 directory.
    const first = await start();
    await waitFor('the CA to issue both certificates', 10_000, () => caIssued(first, CLIENT) === 1 && caIssued(first, SERVER) === 1, () => first.stderr().slice(-3000));
    let r = await curl(client, url());
    for (let i = 0; i < 40 && r.status !== 200; i++) { await sleep(100); r = await curl(client, url()); }
    assert.equal(r.status, 200, `the mesh serves before the restart: ${r.stderr}`);
    const cache = CertCache.open(agentDataDir);
    assert.ok(cache.ok, cache.ok ? '' : cache.error);
    const files = { client: cache.value.filesFor(CLIENT), server: cache.value.filesFor(SERVER) };
    assert.equal(statSync(join(agentDataDir, IDENTITIES_DIR)).mode & 0o777, 0o700);
    for (const f of [files.client.key, files.client.chain, files.server.key, files.server.chain]) assert.equal(statSync(f).mode & 0o777, 0o600, f);
    assert.equal(readdirSync(join(agentDataDir, IDENTITIES_DIR)).length, 4, 'two files per identity, no temporary file left');
    await stop(first);

    // 2. Same data directory: served from the cache, the CA signs nothing, the first request succeeds.
    const second = await start();
    const firstTry = await curl(client, url());
    assert.equal(firstTry.status, 200, `the first request after the restart: ${firstTry.stderr}\n${second.stderr().slice(-3000)}`);
    const loaded = logLines(second).filter((l) => l.msg === 'certificate loaded from the on-disk cache').map((l) => l.identity).sort();
    assert.deepEqual(loaded, [SERVER, CLIENT].sort(), `both loaded from the cache:\n${second.stderr().slice(-3000)}`);
    assert.equal(caIssued(second, CLIENT) + caIssued(second, SERVER), 0, `the CA issued nothing after the restart:\n${second.stderr().slice(-3000)}`);
    assert.ok(!logLines(second).some((l) => l.msg === 'cached key or certificate refused and removed: requesting a new certificate'));
    await stop(second);

    // 3. The server's cached chain corrupted: refused with the file named, that identity alone requested again.
    writeFileSync(files.server.chain, '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n', { mode: 0o600 });
    const third = await start();
    await waitFor('the CA to issue the server\'s certificate again', 10_000, () => caIssued(third, SERVER) === 1, () => third.stderr().slice(-3000));
    const warnings = logLines(third).filter((l) => l.msg === 'cached key or certificate refused and removed: requesting a new certificate');
    assert.equal(warnings.length, 1, third.stderr().slice(-3000));
    assert.equal(warnings[0]!.file, files.server.chain, 'the warning names the corrupted file');
    assert.equal(warnings[0]!.identity, SERVER);
    assert.match(String(warnings[0]!.reason), /does not parse as PEM certificates/);
    assert.equal(caIssued(third, CLIENT), 0, 'the client\'s cached certificate is still used');
    r = await curl(client, url());
    for (let i = 0; i < 40 && r.status !== 200; i++) { await sleep(100); r = await curl(client, url()); }
    assert.equal(r.status, 200, `the mesh serves with the new certificate: ${r.stderr}`);
    assert.equal(statSync(files.server.chain).mode & 0o777, 0o600, 'the fresh certificate is cached in its place');
    await stop(third);
  });

  test('a successor weft agent started beside the running one serves the certificates its predecessor cached', async () => {
    const cpDir = join(dir, 'cp');
    const cp = startControlPlane(node2, configPath, cpDir);
    started.push(cp);
    await cp.ready;
    const address = `${node2.ip}:${CONTROL_PLANE_PORT}`;
    // startNodeAgent gives it --data-dir <cpDir>/agent-n2: the same for both, as the DaemonSet's hostPath is.
    const old = startNodeAgent(node2, address, cpDir, ['--drain-grace', '1']);
    started.push(old);
    await old.ready;
    await waitFor('the CA to issue both certificates', 10_000, () => caIssued(cp, CLIENT) === 1 && caIssued(cp, SERVER) === 1, () => `${cp.stderr().slice(-2000)}
${old.stderr().slice(-2000)}`);
    const url2 = `http://${server2.ip}:8080/`;
    let r = await curl(client2, url2);
    for (let i = 0; i < 40 && r.status !== 200; i++) { await sleep(100); r = await curl(client2, url2); }
    assert.equal(r.status, 200, `the mesh serves before the upgrade: ${r.stderr}`);
    const cache = CertCache.open(join(cpDir, `agent-${node2.name}`));
    assert.ok(cache.ok, cache.ok ? '' : cache.error);
    for (const id of [CLIENT, SERVER]) assert.equal(statSync(cache.value.filesFor(id).key).mode & 0o777, 0o600, `${id} is cached`);

    const successor = startNodeAgent(node2, address, cpDir, ['--drain-grace', '1']);
    started.push(successor);
    await successor.ready;
    const code = await old.kill('SIGTERM');
    assert.equal(code, 0, `the old agent drained and exited:\n${old.stderr().slice(-2000)}`);
    const firstTry = await curl(client2, url2);
    assert.equal(firstTry.status, 200, `the first request through the successor alone: ${firstTry.stderr}\n${successor.stderr().slice(-3000)}`);
    const loaded = logLines(successor).filter((l) => l.msg === 'certificate loaded from the on-disk cache').map((l) => l.identity).sort();
    assert.deepEqual(loaded, [SERVER, CLIENT].sort(), `the successor loaded both from the cache:\n${successor.stderr().slice(-3000)}`);
    assert.deepEqual([caIssued(cp, CLIENT), caIssued(cp, SERVER)], [1, 1], `the CA signed nothing for the successor:\n${cp.stderr().slice(-3000)}`);
    await successor.kill('SIGTERM');
    await cp.kill('SIGTERM');
  });
});
