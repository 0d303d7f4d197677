/**
 * The two-node lab the pod-to-pod hop benchmarks run in: a client pod on n1, a server pod on n2, a
 * load server in the server pod, ECDSA P-256 certificates for the TLS-terminating contenders, and
 * cleanup (pinned objects of this lab's nodes, the lab, the temp directory) whatever happens.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, LabNode, LabPod, type PodOptions } from '../../agent/sandbox';
import { WEFT_CLI } from '../../agent/sandbox/weft-agent';

/** What a running contender exposes for readings: the processes that are the proxies, and how to stop them. */
export interface Running { pids(): number[]; stop(): Promise<void> }
/** A contender listening on one address the client connects to. */
export interface Endpoint extends Running { host: string; port: number }
export interface Contender<E extends Running = Endpoint> { name: string; start(ctx: BenchContext): Promise<E> }
export interface BenchContext { dir: string; lab: Lab; n1: LabNode; n2: LabNode; client: LabPod; server: LabPod }

export interface HopLabOptions {
  /** lab name, unique among the labs running on this machine */
  name: string;
  client: PodOptions;
  server: PodOptions;
  /** a Node.js script run in the server pod; it prints a line once it listens */
  serverScript: string;
}

const SERVER_READY_MS = 10_000;

/** A CA and a `server` and a `client` certificate (ECDSA P-256) in `dir`: .crt/.key, and .pem with both. */
export function makeCerts(dir: string): void {
  const o = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  o(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=bench-ca']);
  for (const who of ['server', 'client']) {
    o(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${who}.key`, '-out', `${who}.csr`, '-subj', `/CN=${who}`]);
    o(['x509', '-req', '-in', `${who}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${who}.crt`, '-days', '2']);
    writeFileSync(join(dir, `${who}.pem`), readFileSync(join(dir, `${who}.crt`), 'utf8') + readFileSync(join(dir, `${who}.key`), 'utf8'));
  }
}

/** Starts `cmd` in `node`; its pid once it has survived `settleMs` (it throws with its stderr if it exits before). */
export async function spawnReady(node: LabNode, cmd: string, args: string[], settleMs = 500): Promise<number> {
  const p = node.spawn(cmd, args);
  let err = '';
  p.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
  p.stdout?.resume();
  await new Promise((r) => setTimeout(r, settleMs));
  if (p.exitCode !== null) throw new Error(`${cmd} exited at start (${p.exitCode}): ${err}`);
  return p.pid!;
}

/** SIGTERM to each pid (the lab reaps what is left when it closes). */
export const stopPids = async (pids: number[]): Promise<void> => {
  for (const pid of pids) { try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ } }
};

/** Removes what a Weft agent pinned for this lab's nodes (only these: other labs may have agents on this host). */
export function uninstallWeft(lab: Lab): void {
  for (const n of lab.nodes) spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', n.name], { stdio: 'ignore' });
}

/** Runs `script` (Node.js) in `server` and resolves once it printed a line (it listens); throws with its stderr otherwise. */
export async function startServer(server: LabPod, script: string): Promise<void> {
  const srv = server.spawn(process.execPath, ['-e', script]);
  let err = '';
  srv.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`load server in pod ${server.name} not listening after ${SERVER_READY_MS} ms: ${err}`)), SERVER_READY_MS);
    srv.stdout!.once('data', () => { clearTimeout(timer); resolve(); });
    srv.once('exit', (code) => { clearTimeout(timer); reject(new Error(`load server in pod ${server.name} exited (${code}): ${err}`)); });
  });
  srv.stdout!.resume();
}

/**
 * Measures each contender in turn. One that cannot run (say, an agent that does not start) still
 * leaves the others' rows: its error is collected and a note says it was not measured.
 */
export async function measureEach<C extends { name: string }, R>(contenders: C[], measure: (contender: C) => Promise<{ rows: R[]; note?: string }>):
  Promise<{ rows: R[]; notes: string[]; errors: string[] }> {
  const rows: R[] = [];
  const notes: string[] = [];
  const errors: string[] = [];
  for (const contender of contenders) {
    try {
      const m = await measure(contender);
      rows.push(...m.rows);
      if (m.note) notes.push(m.note);
    } catch (e) {
      errors.push(`${contender.name}: ${(e as Error).message}`);
      notes.push(`${contender.name}: not measured (error below)`);
    }
  }
  return { rows, notes, errors };
}

/** Builds the lab, runs `body` in it, and tears everything down also when `body` throws. */
export async function withHopLab<T>(opts: HopLabOptions, body: (c: BenchContext) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), `weft-${opts.name}-`));
  let lab: Lab | undefined;
  try {
    lab = await Lab.create({ name: opts.name });
    makeCerts(dir);
    const n1 = await lab.node('n1');
    const n2 = await lab.node('n2');
    const client = await n1.pod('client', opts.client);
    const server = await n2.pod('server', opts.server);
    await startServer(server, opts.serverScript);
    return await body({ dir, lab, n1, n2, client, server });
  } finally {
    if (lab) {
      uninstallWeft(lab);
      await lab.close();
    }
    rmSync(dir, { recursive: true, force: true });
  }
}
