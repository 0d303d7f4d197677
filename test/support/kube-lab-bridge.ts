import { rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import type { LabNode } from '../../agent/sandbox';

/**
 * Makes the test's API server (test/support/kube-cluster.ts, on the host's loopback) reachable from
 * inside a lab node's network namespace, at https://127.0.0.1:<the same port> there, as a control
 * plane running on that node expects it. Nothing is routed between the host and the lab: a relay
 * process in the node's netns accepts each connection and passes it over a Unix socket (a file, so
 * not bound to a netns) to this process, which connects it to the API server. The API server's
 * serving certificate names 127.0.0.1, so TLS verifies unchanged end to end (the relays see only
 * ciphertext). A connection whose API server end fails (a restart) is reset at the other end too,
 * as a client of a real API server would see it.
 */
export interface ApiServerBridge {
  /** https://127.0.0.1:PORT: the API server as seen from inside the node's netns */
  server: string;
  /** connections relayed so far */
  connections(): number;
  /**
   * For a failure message: whether the relay process runs, and each open connection's age, bytes
   * each way and how long since each way last carried a byte (a watch that stalled shows up as a
   * long silence towards the control plane while the API server end stays open).
   */
  describe(): string;
  close(): Promise<void>;
}

const RELAY = `
const net = require('net');
const [sock, port] = process.argv.slice(1);
net.createServer((c) => {
  const u = net.connect(sock);
  c.pipe(u).pipe(c);
  c.on('error', () => u.destroy());
  u.on('error', () => c.destroy());
  c.on('close', () => u.destroy());
  u.on('close', () => c.destroy());
}).listen(Number(port), '127.0.0.1', () => console.log('listening'));`;

const READY_MS = 10_000;

/** `server` is the cluster's https://127.0.0.1:PORT; `dir` a folder of the test's for the Unix socket. */
export async function bridgeApiServer(node: LabNode, server: string, dir: string): Promise<ApiServerBridge> {
  const port = Number(new URL(server).port);
  if (!Number.isInteger(port) || port <= 0) throw new Error(`bridgeApiServer: server ${server} has no port`);
  const path = join(dir, `apiserver-${node.name}.sock`);
  rmSync(path, { force: true });
  const open = new Set<Socket>();
  let count = 0;
  interface Flow { n: number; opened: number; up: number; down: number; lastUp: number; lastDown: number }
  const flows = new Set<Flow>();
  const host: Server = createServer((c) => {
    count++;
    const u = connect(port, '127.0.0.1');
    open.add(c).add(u);
    const flow: Flow = { n: count, opened: Date.now(), up: 0, down: 0, lastUp: 0, lastDown: 0 };
    flows.add(flow);
    c.on('data', (d: Buffer) => { flow.up += d.length; flow.lastUp = Date.now(); });
    u.on('data', (d: Buffer) => { flow.down += d.length; flow.lastDown = Date.now(); });
    c.once('close', () => flows.delete(flow));
    c.pipe(u).pipe(c);
    for (const [a, b] of [[c, u], [u, c]] as const) {
      a.on('error', () => b.destroy());
      a.on('close', () => { b.destroy(); open.delete(a); });
    }
  });
  await new Promise<void>((resolve, reject) => {
    host.once('error', reject);
    host.listen(path, () => { host.off('error', reject); resolve(); });
  });
  const relay = node.spawn(process.execPath, ['-e', RELAY, path, String(port)]);
  let out = '';
  relay.stdout?.setEncoding('utf8').on('data', (d: string) => { out += d; });
  relay.stderr?.setEncoding('utf8').on('data', (d: string) => { out += d; });
  const close = async (): Promise<void> => {
    if (relay.exitCode === null && relay.signalCode === null) {
      const gone = new Promise((r) => relay.once('exit', r));
      relay.kill('SIGKILL');
      await gone;
    }
    for (const s of open) s.destroy();
    await new Promise<void>((r) => host.close(() => r()));
    rmSync(path, { force: true });
  };
  const listening = await new Promise<string | true>((resolve) => {
    const timer = setTimeout(() => resolve(`not listening after ${READY_MS} ms`), READY_MS);
    relay.stdout?.on('data', () => { if (out.includes('listening')) { clearTimeout(timer); resolve(true); } });
    relay.once('exit', (code, signal) => { clearTimeout(timer); resolve(`exited (${code ?? signal})`); });
  });
  if (listening !== true) {
    await close();
    throw new Error(`the API server relay in node ${node.name}'s netns (127.0.0.1:${port}) ${listening}: ${out.trim()}`);
  }
  const describe = (): string => {
    const now = Date.now();
    const ago = (t: number): string => (t === 0 ? 'never' : `${((now - t) / 1000).toFixed(1)} s ago`);
    const state = relay.exitCode !== null || relay.signalCode !== null ? `exited (${relay.exitCode ?? relay.signalCode})` : `running (pid ${relay.pid})`;
    const lines = [...flows].map((f) => `  #${f.n}, open ${((now - f.opened) / 1000).toFixed(1)} s: to the API server ${f.up} B (last ${ago(f.lastUp)}), `
      + `to the control plane ${f.down} B (last ${ago(f.lastDown)})`);
    return [`API server bridge in ${node.name}: relay ${state}, ${count} connections so far, ${flows.size} open`, ...lines].join('\n');
  };
  return { server: `https://127.0.0.1:${port}`, connections: () => count, describe, close };
}
