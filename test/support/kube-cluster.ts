import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeConfig } from '@kubernetes/client-node';
import { createKubePki, type KubePki, type Pem } from './kube-pki';

/**
 * A real Kubernetes control plane for the tests: etcd, kube-apiserver and kube-controller-manager
 * built from source by scripts/kube-tools.sh (run by scripts/setup.sh), on loopback ports chosen
 * free, with their data and certificates in a temporary folder. The API server runs RBAC and Node
 * authorization, the ServiceAccount admission plugin and a token signer of its own; the controller
 * manager runs every default controller (`*`: EndpointSlices, namespace deletion, ServiceAccounts
 * and their root CA ConfigMap, garbage collection, ...) with per-controller ServiceAccount
 * credentials, as kubeadm sets it up. There is no kubelet: a test plays it (binds pods, writes their
 * status). close() stops every process, also when start() failed halfway, and a process exit
 * handler kills whatever is left, so no test leaves an etcd or API server behind.
 */

export const KUBE_TOOLS_DIR = process.env.WEFT_KUBE_TOOLS_BIN ?? '/var/cache/weft-test-tools/bin';
const BINARIES = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kubectl'] as const;
/** The Service range the API server allocates ClusterIPs from (addresses in API objects only; nothing routes them). */
export const SERVICE_CLUSTER_IP_RANGE = '10.96.0.0/16';
export const SERVICE_ACCOUNT_ISSUER = 'https://kubernetes.default.svc.cluster.local';

/** Bounded waits: a cold API server is ready in a few seconds; the bound is only there so a broken start ends. */
const READY_TIMEOUT_MS = 90_000;
const STOP_GRACE_MS = 10_000;

export interface KubeClusterOptions {
  /** Names the temporary folder (weft-kube-<name>-*); default `kube`. */
  name?: string;
  /** Start kube-controller-manager (default true). */
  controllerManager?: boolean;
}

export interface StartupTimes {
  etcdMs: number;
  apiServerMs: number;
  /** Until the controller manager's ServiceAccount controller has made default/default. */
  controllersMs?: number;
  totalMs: number;
}

export interface KubeCluster {
  /** https://127.0.0.1:PORT */
  server: string;
  /** A kubeconfig for an admin (system:masters) client certificate. */
  kubeconfigPath: string;
  /** The CA that signed the API server's serving certificate and that it trusts for client certificates. */
  caPem: string;
  dir: string;
  versions: { kubernetes: string; etcd: string };
  startup: StartupTimes;
  /** A fresh client config for the admin kubeconfig. */
  kubeConfig(): KubeConfig;
  /** A kubeconfig file for a user authenticated by a client certificate with these groups (for RBAC tests). */
  userKubeconfig(user: string, groups: string[]): Promise<string>;
  /**
   * A kubeconfig (written to `path`, mode 0600) authenticating as ServiceAccount `namespace/name`
   * with a token from the TokenRequest API (2 h), as a pod of that account is; `server` when the
   * API server is reached another way (default: `server` above). Returns `path`.
   */
  serviceAccountKubeconfig(namespace: string, name: string, path: string, server?: string): Promise<string>;
  /** Runs the cluster's kubectl with the admin kubeconfig; never throws for a non-zero exit. */
  kubectl(args: string[], stdin?: string): Promise<{ code: number; stdout: string; stderr: string }>;
  /** The last lines of a component's log, for failure messages. */
  logTail(component: 'etcd' | 'kube-apiserver' | 'kube-controller-manager', lines?: number): string;
  /** Stops the API server and starts it again on the same port and etcd; resolves when /readyz is ok. */
  restartApiServer(): Promise<void>;
  close(): Promise<void>;
}

interface Managed {
  name: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  log: string;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
/** Temporary folders of clusters not closed yet. */
const liveDirs = new Set<string>();
function killAll(): void {
  for (const child of live) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
  for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
}
/**
 * On exit, and on SIGINT/SIGTERM (a cancelled test run), the components die with the test process.
 * A signal is raised again afterwards when nothing else handles it, so the process still ends as it would have.
 */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const onSignal = (): void => {
      killAll();
      process.removeListener(signal, onSignal);
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

export function kubeToolsMissing(): string | null {
  for (const b of BINARIES) {
    if (!existsSync(join(KUBE_TOOLS_DIR, b))) {
      return `${b} not found in ${KUBE_TOOLS_DIR}: run \`bash scripts/setup.sh\` (scripts/kube-tools.sh builds the Kubernetes test tools; WEFT_KUBE_TOOLS_BIN overrides the folder)`;
    }
  }
  return null;
}

function toolVersions(): { kubernetes: string; etcd: string } {
  const file = join(KUBE_TOOLS_DIR, 'VERSIONS');
  const [kubernetes = 'unknown', etcd = 'unknown'] = existsSync(file) ? readFileSync(file, 'utf8').trim().split(/\s+/) : [];
  return { kubernetes, etcd };
}

/** `weft controlplane` in Kubernetes mode, as a test runs it beside a KubeCluster. */
export interface SpawnedControlPlane {
  child: ChildProcess;
  /** 127.0.0.1:PORT, its gRPC address */
  address: string;
  /** its exit code once it exited (null: by a signal); undefined while it runs */
  exited(): number | null | undefined;
}

/**
 * Starts `weft controlplane --kubeconfig` on a free loopback port with `dataDir`; everything it
 * prints goes to `onOutput`. The caller waits for its `"control plane ready"` line, bounded, its own way.
 */
export async function spawnKubeControlPlane(cli: string, kubeconfig: string, dataDir: string, onOutput: (text: string) => void): Promise<SpawnedControlPlane> {
  const address = `127.0.0.1:${await freePort()}`;
  const child = spawn(process.execPath, [cli, 'controlplane', `--kubeconfig=${kubeconfig}`, `--listen=${address}`, `--data-dir=${dataDir}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, WEFT_LOG_LEVEL: 'info' },
  });
  const collect = (c: Buffer): void => onOutput(c.toString('utf8'));
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  let exited: number | null | undefined;
  child.once('exit', (code) => { exited = code; });
  return { child, address, exited: () => exited };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

function tail(path: string, lines: number): string {
  if (!existsSync(path)) return '(no log)';
  return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
}

function launch(dir: string, name: string, args: string[]): Managed {
  const log = join(dir, `${name}.log`);
  const fd = openSync(log, 'a');
  const child = spawn(join(KUBE_TOOLS_DIR, name), args, { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  live.add(child);
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code, signal) => { live.delete(child); resolve(code ?? (signal ? -1 : null)); });
    child.once('error', () => { live.delete(child); resolve(-1); });
  });
  return { name, child, exited, log };
}

async function stop(p: Managed | undefined): Promise<void> {
  if (p === undefined || p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const done = await Promise.race([p.exited.then(() => true), sleep(STOP_GRACE_MS).then(() => false)]);
  if (!done) {
    p.child.kill('SIGKILL');
    await p.exited;
  }
}

/** GET over TLS with a client certificate: status and body, or the connection error's message. */
function get(url: string, ca: string, client: Pem | undefined): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const req = request(url, { ca, ...(client ? { cert: client.cert, key: client.key } : {}), timeout: 5_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (e) => resolve({ error: e.message }));
    req.end();
  });
}

/** Polls until `check` says ok; fails with the last answer and the component's log if it exits or time runs out. */
async function waitUntil(what: string, p: Managed, check: () => Promise<string | true>): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = '';
  let exitCode: number | null | undefined;
  void p.exited.then((c) => { exitCode = c; });
  for (;;) {
    const answer = await check();
    if (answer === true) return;
    last = answer;
    if (exitCode !== undefined) throw new Error(`${p.name} exited (code ${exitCode}) before ${what}; last answer: ${last}\n--- ${p.log} ---\n${tail(p.log, 30)}`);
    if (Date.now() > deadline) throw new Error(`${what} not reached in ${READY_TIMEOUT_MS / 1000} s; last answer: ${last}\n--- ${p.log} ---\n${tail(p.log, 30)}`);
    await sleep(100);
  }
}

function kubeconfigYaml(server: string, ca: string, user: string, client: Pem): string {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: weft-test`,
    `  cluster: { server: "${server}", certificate-authority-data: "${b64(ca)}" }`,
    'users:',
    `- name: "${user}"`,
    `  user: { client-certificate-data: "${b64(client.cert)}", client-key-data: "${b64(client.key)}" }`,
    'contexts:',
    `- name: weft-test`,
    `  context: { cluster: weft-test, user: "${user}" }`,
    'current-context: weft-test',
    '',
  ].join('\n');
}

export async function startKubeCluster(options: KubeClusterOptions = {}): Promise<KubeCluster> {
  const missing = kubeToolsMissing();
  if (missing !== null) throw new Error(missing);
  installExitHook();
  const started = Date.now();
  const dir = mkdtempSync(join(tmpdir(), `weft-kube-${options.name ?? 'kube'}-`));
  liveDirs.add(dir);
  const processes: Managed[] = [];
  let apiserver: Managed | undefined;
  const cleanup = async (): Promise<void> => {
    // Controllers first, the store last, so nothing logs a storm of connection errors on the way down.
    for (const p of [...processes].reverse()) await stop(p);
    rmSync(dir, { recursive: true, force: true });
    liveDirs.delete(dir);
  };
  try {
    const pki: KubePki = await createKubePki({ dns: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc'], ips: ['127.0.0.1', '10.96.0.1'] });
    const file = (name: string, content: string): string => {
      const path = join(dir, name);
      writeFileSync(path, content, { mode: 0o600 });
      return path;
    };
    const caFile = file('ca.crt', pki.ca.cert);
    const caKey = file('ca.key', pki.ca.key);
    const servingCert = file('apiserver.crt', pki.serving.cert);
    const servingKey = file('apiserver.key', pki.serving.key);
    const saKey = file('sa.key', pki.serviceAccount.key);
    const saPub = file('sa.pub', pki.serviceAccount.pub);

    const [etcdClient, etcdPeer, apiPort] = [await freePort(), await freePort(), await freePort()];
    const etcdUrl = `http://127.0.0.1:${etcdClient}`;
    const etcd = launch(dir, 'etcd', [
      '--name=weft-test', `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`, `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`, `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-cluster=weft-test=http://127.0.0.1:${etcdPeer}`,
      '--log-level=warn',
      // A throwaway store: fsync only slows the tests down on a disk other engineers share.
      '--unsafe-no-fsync',
    ]);
    processes.push(etcd);
    await waitUntil('etcd /health', etcd, async () => {
      const r = await fetch(`${etcdUrl}/health`).then(async (res) => ({ status: res.status, body: await res.text() }), (e: Error) => ({ error: e.message }));
      return 'status' in r && r.status === 200 && r.body.includes('"true"') ? true : JSON.stringify(r);
    });
    const etcdMs = Date.now() - started;

    const server = `https://127.0.0.1:${apiPort}`;
    const apiArgs = [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1', `--secure-port=${apiPort}`, '--advertise-address=127.0.0.1',
      `--tls-cert-file=${servingCert}`, `--tls-private-key-file=${servingKey}`, `--cert-dir=${join(dir, 'apiserver-certs')}`,
      `--client-ca-file=${caFile}`,
      `--service-account-issuer=${SERVICE_ACCOUNT_ISSUER}`, `--service-account-key-file=${saPub}`, `--service-account-signing-key-file=${saKey}`,
      `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
      '--authorization-mode=Node,RBAC',
      // Kubernetes 1.37 refuses a loopback advertise address for the reconciler that publishes the
      // API server's own endpoints (the `kubernetes` Service); nothing here reaches it through that Service.
      '--endpoint-reconciler-type=none',
      '--allow-privileged=true',
      '--profiling=false',
    ];
    const startApiServer = async (): Promise<void> => {
      apiserver = launch(dir, 'kube-apiserver', apiArgs);
      processes.push(apiserver);
      await waitUntil('kube-apiserver /readyz', apiserver, async () => {
        const r = await get(`${server}/readyz`, pki.ca.cert, pki.admin);
        return 'status' in r && r.status === 200 ? true : 'status' in r ? `${r.status} ${r.body.slice(-300)}` : r.error;
      });
    };
    await startApiServer();
    const apiServerMs = Date.now() - started;

    const kubeconfigPath = file('admin.kubeconfig', kubeconfigYaml(server, pki.ca.cert, 'weft-test-admin', pki.admin));
    const kubectl = (args: string[], stdin?: string): Promise<{ code: number; stdout: string; stderr: string }> =>
      new Promise((resolve) => {
        const child = spawn(join(KUBE_TOOLS_DIR, 'kubectl'), [`--kubeconfig=${kubeconfigPath}`, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c; });
        child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
        child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
        child.stdin.end(stdin ?? '');
      });

    let controllersMs: number | undefined;
    if (options.controllerManager !== false) {
      const kcmConfig = file('controller-manager.kubeconfig', kubeconfigYaml(server, pki.ca.cert, 'system:kube-controller-manager', pki.controllerManager));
      const kcm = launch(dir, 'kube-controller-manager', [
        `--kubeconfig=${kcmConfig}`,
        `--authentication-kubeconfig=${kcmConfig}`, `--authorization-kubeconfig=${kcmConfig}`,
        '--bind-address=127.0.0.1', `--secure-port=${await freePort()}`,
        '--leader-elect=false',
        '--controllers=*',
        '--use-service-account-credentials=true',
        `--service-account-private-key-file=${saKey}`,
        `--root-ca-file=${caFile}`,
        `--cluster-signing-cert-file=${caFile}`, `--cluster-signing-key-file=${caKey}`,
        '--cluster-name=weft-test',
        // No kubelet posts Node heartbeats here: without this, the node lifecycle controller would
        // mark the test's Nodes unreachable after 50 s and their pods not ready.
        '--node-monitor-grace-period=1h',
      ]);
      processes.push(kcm);
      await waitUntil('the controller manager (ServiceAccount default/default made)', kcm, async () => {
        const r = await get(`${server}/api/v1/namespaces/default/serviceaccounts/default`, pki.ca.cert, pki.admin);
        return 'status' in r && r.status === 200 ? true : 'status' in r ? `${r.status}` : r.error;
      });
      controllersMs = Date.now() - started;
    }

    const logOf = (name: string): string => join(dir, `${name}.log`);
    return {
      server,
      kubeconfigPath,
      caPem: pki.ca.cert,
      dir,
      versions: toolVersions(),
      startup: { etcdMs, apiServerMs, ...(controllersMs !== undefined ? { controllersMs } : {}), totalMs: Date.now() - started },
      kubeConfig() {
        const kc = new KubeConfig();
        kc.loadFromFile(kubeconfigPath);
        return kc;
      },
      async userKubeconfig(user, groups) {
        const safe = user.replace(/[^a-zA-Z0-9_.-]/g, '_');
        const path = join(dir, 'users');
        mkdirSync(path, { recursive: true });
        return file(join('users', `${safe}.kubeconfig`), kubeconfigYaml(server, pki.ca.cert, user, await pki.client(user, groups)));
      },
      async serviceAccountKubeconfig(namespace, name, path, via = server) {
        const r = await kubectl(['create', 'token', name, '-n', namespace, '--duration=2h']);
        if (r.code !== 0) throw new Error(`kubectl create token ${name} -n ${namespace} failed: ${r.stderr}`);
        writeFileSync(path, [
          'apiVersion: v1', 'kind: Config',
          `clusters: [{ name: test, cluster: { server: "${via}", certificate-authority-data: "${Buffer.from(pki.ca.cert).toString('base64')}" } }]`,
          `users: [{ name: ${name}, user: { token: "${r.stdout.trim()}" } }]`,
          `contexts: [{ name: test, context: { cluster: test, user: ${name} } }]`,
          'current-context: test', '',
        ].join('\n'), { mode: 0o600 });
        return path;
      },
      kubectl,
      logTail: (component, lines = 30) => tail(logOf(component), lines),
      async restartApiServer() {
        await stop(apiserver);
        processes.splice(processes.indexOf(apiserver!), 1);
        await startApiServer();
      },
      close: cleanup,
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}
