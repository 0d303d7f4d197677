// The lab harness against the real kernel: connectivity, placement, and cleanup (also after crashes).
import { spawn, spawnSync } from 'node:child_process';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cgroup2Root, Lab, startEchoServer, tcpRequest, type LabPod } from '../../agent/sandbox';

function unavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (netns, veths, cgroups)';
  if (spawnSync('ip', ['netns', 'list']).status !== 0) return '`ip netns` is unavailable (install iproute2)';
  if (spawnSync('nsenter', ['--version']).status !== 0) return 'nsenter is unavailable (install util-linux)';
  try {
    cgroup2Root();
  } catch (err) {
    return (err as Error).message;
  }
  return undefined;
}

const skipReason = unavailable();
if (skipReason) process.stderr.write(`\n*** SKIPPING netns lab harness tests: ${skipReason} ***\n\n`);

const netnsOf = (index: number): string[] =>
  (fs.existsSync('/run/netns') ? fs.readdirSync('/run/netns') : []).filter((n) => n.startsWith(`wl-${index}-`));
const cgroupOf = (index: number): string => path.join(cgroup2Root(), `weft-lab-${index}`);

/** Alive and not a zombie waiting for a parent that is not us. */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function assertGone(index: number, pids: number[]): void {
  assert.deepEqual(netnsOf(index), [], 'no netns of the lab');
  assert.equal(fs.existsSync(cgroupOf(index)), false, 'no cgroup of the lab');
  assert.deepEqual(pids.filter(running), [], 'no process of the lab');
}

/** `from` reaches the echo server of `to` at `host`, which sees `from`'s own address. */
async function echoes(from: LabPod, to: LabPod, host: string): Promise<void> {
  const r = await tcpRequest(from, host, 7000, { payload: 'ping' });
  assert.equal(r.code, 0, r.stderr);
  const peer = host.includes(':') ? from.ip6 : from.ip;
  assert.match(r.stdout, new RegExp(`^echo ${to.name} peer=${peer}:\\d+\nping$`));
}

describe('lab connectivity', { skip: skipReason }, () => {
  let lab: Lab;
  let a: LabPod, b: LabPod, c: LabPod;
  before(async () => {
    lab = await Lab.create({ name: 'hconn' });
    const n1 = await lab.node('n1');
    const n2 = await lab.node('n2');
    [a, b, c] = [await n1.pod('a', { ipv6: true }), await n1.pod('b', { ipv6: true }), await n2.pod('c', { ipv6: true })];
    for (const p of [a, b, c]) await startEchoServer(p, 7000, { family: 6 }).ready;
  });
  after(() => lab?.close());

  test('pods on one node reach each other over IPv4 and IPv6', async () => {
    await echoes(a, b, b.ip);
    await echoes(a, b, b.ip6!);
  });

  test('pods on two nodes reach each other over IPv4 and IPv6, both ways', async () => {
    await echoes(a, c, c.ip);
    await echoes(a, c, c.ip6!);
    await echoes(c, b, b.ip);
    await echoes(c, b, b.ip6!);
  });
});

describe('lab placement and cleanup', { skip: skipReason }, () => {
  test('a process spawned in a pod runs in its cgroup and netns; one on a node in its system cgroup', async (t) => {
    const lab = await Lab.create({ name: 'hplace' });
    t.after(() => lab.close());
    const n1 = await lab.node('n1');
    const a = await n1.pod('a');
    for (const [where, cgroup, netns] of [[a, a.cgroupPath, a.netns], [n1, n1.systemCgroupPath, n1.netns]] as const) {
      const child = where.spawn('sleep', ['30']);
      const pid = child.pid!;
      await new Promise((r) => setTimeout(r, 100)); // let nsenter exec sleep
      const line = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'));
      assert.equal(line, `0::/${path.relative(cgroup2Root(), cgroup)}`);
      assert.equal(fs.statSync(`/proc/${pid}/ns/net`).ino, fs.statSync(`/run/netns/${netns}`).ino);
    }
    assert.equal(a.cgroupId, fs.statSync(a.cgroupPath, { bigint: true }).ino);
  });

  test('close() leaves no netns, cgroup or process, even one that left its process group; and is idempotent', async () => {
    const lab = await Lab.create({ name: 'hclose' });
    const a = await (await lab.node('n1')).pod('a');
    const tracked = a.spawn('sleep', ['1000']).pid!;
    const escaped = await a.exec('sh', ['-c', 'setsid sleep 1000 >/dev/null 2>&1 & echo $!'], { timeoutMs: 5_000 });
    await lab.close();
    await lab.close();
    assertGone(lab.index, [tracked, Number(escaped.stdout.trim())]);
  });
});

const HARNESS = path.join(__dirname, '..', '..', 'agent', 'sandbox');

/** Runs a node child that builds a lab, reports it, then ends as `ending` says (or is SIGKILLed once it reported). */
async function crashingChild(ending: string, killAfterReport = false): Promise<{ index: number; pids: number[]; code: number | null; signal: string | null }> {
  const script = `
    const { Lab } = require(${JSON.stringify(HARNESS)});
    (async () => {
      const lab = await Lab.create({ name: 'hcrash' });
      const a = await (await lab.node('n1')).pod('a', { ipv6: true });
      const pids = [a.spawn('sleep', ['1000']).pid];
      await new Promise((r) => setTimeout(r, 100));
      console.log(JSON.stringify({ index: lab.index, pids }));
      ${ending}
    })();`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    if (killAfterReport && out.includes('\n')) child.kill('SIGKILL');
  });
  const [code, signal] = await new Promise<[number | null, string | null]>((resolve, reject) => {
    const timer = setTimeout(() => (child.kill('SIGKILL'), reject(new Error(`child did not end in 15 s: ${out}`))), 15_000);
    child.once('exit', (c, s) => (clearTimeout(timer), resolve([c, s])));
  });
  return { ...JSON.parse(out.split('\n')[0]!), code, signal };
}

describe('lab cleanup when its process dies', { skip: skipReason }, () => {
  test('an uncaught exception after creating a lab leaves nothing behind', async () => {
    const r = await crashingChild("throw new Error('boom');");
    assert.equal(r.code, 1);
    assertGone(r.index, r.pids);
  });

  test('SIGTERM leaves nothing behind and still ends the process by the signal', async () => {
    const r = await crashingChild('process.kill(process.pid, "SIGTERM"); await new Promise((r) => setTimeout(r, 5000));');
    assert.equal(r.signal, 'SIGTERM');
    assertGone(r.index, r.pids);
  });

  test('leftovers of a SIGKILLed run are swept by the next Lab.create', async () => {
    const r = await crashingChild('await new Promise(() => setInterval(() => {}, 1000));', true);
    assert.equal(r.signal, 'SIGKILL');
    assert.notDeepEqual(netnsOf(r.index), [], 'SIGKILL leaves the lab behind');
    const next = await Lab.create({ name: 'hsweep' });
    await next.close();
    assertGone(r.index, r.pids);
  });
});
