#!/usr/bin/env -S node --max-semi-space-size=1 --no-parallel-scavenge
/** The `weft` command line. Subcommands and flags follow DESIGN.md; unknown flags are errors. */
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { IN_POD_CREDENTIALS, readAgentCredentials } from './node/credential-files';
import { PORTS } from './node/ports';
import { parseDrainGrace } from './node/drain-grace';

const USAGE = `usage: weft <command> [flags]

commands:
  local --config FILE [--node NAME] [--data-dir DIR] [--cgroup-root DIR] [--kubepods-cgroup DIR] [--node-ip IP]... [--cert-ttl SECONDS] [--drain-grace SECONDS]
                         control plane and node agent in one process, following FILE
  controlplane (--config FILE | --kubeconfig FILE | in-cluster) [--listen HOST:PORT] [--data-dir DIR] [--serving-name NAME]...
               [--ca-secret NAMESPACE/NAME] [--trust-bundle-configmap NAMESPACE/NAME] [--leader-elect=true|false] [--lease-name [NAMESPACE/]NAME]
                         the control plane alone: CA and discovery on gRPC (default 0.0.0.0:15012); with
                         Kubernetes the CA root is kept in a Secret (default weft-system/weft-ca) and the
                         trust bundle published in a ConfigMap (default weft-system/weft-trust-bundle).
                         --serving-name adds a DNS name or IP agents dial (e.g. its Service's) to its
                         certificate, beside the host name and local addresses. With Kubernetes, replicas
                         elect a leader on a Lease (default weft-controlplane in POD_NAMESPACE, else
                         weft-system; holder POD_NAME): every replica serves, only the leader writes
                         status and Events (--leader-elect=false: this one always writes)
  agent --control-plane HOST:PORT --node NAME [--token-file FILE] [--ca-file FILE] [--data-dir DIR] [--cgroup-root DIR] [--kubepods-cgroup DIR] [--node-ip IP]... [--cert-ttl SECONDS] [--drain-grace SECONDS]
                         the node agent, fed by a control plane. Both files are read again as they
                         change; in a pod they default to the projected token and trust-bundle mounts
                         of daemonset/agent.yaml (${IN_POD_CREDENTIALS.tokenFile}, ${IN_POD_CREDENTIALS.caFile}).
                         Every listener is shared (SO_REUSEPORT) with a successor agent started for the
                         same node; on SIGTERM the agent stops accepting and lets its connections finish
                         for --drain-grace seconds (default 30) before it exits (docs/upgrade.md).
                         Workload keys and certificates are cached (0600) in --data-dir (default
                         /var/lib/weft/agent), so a restart does not request them again
  demo                   build a throwaway sandbox, run the mesh on it, show what happened
  explain SRC DST[:PORT] [METHOD PATH] [--host H] [--header NAME=VALUE]... [--config FILE | --admin HOST:PORT]
                         what the proxy decides for a connection (or, with METHOD PATH, a request) from
                         SRC (namespace/pod, or an IP outside the mesh) to DST (namespace/pod): ALLOW or
                         DENY, the deciding policy and rule, and why. With --config FILE it evaluates that
                         file offline; otherwise it asks the running agent
  status [--admin HOST:PORT] [--web]
                         what the running agent has enrolled, its certificates, what it redirected and
                         who talks to whom through it; --web prints the address of the live page
                         (http://127.0.0.1:15000/live: the mesh graph with rates, success, p99, mTLS
                         and recent denials; loopback only)
  top [--admin HOST:PORT] [--interval S] [--once] [--limit N]
                         the busiest pod pairs through this node's proxy, refreshed every S seconds
                         (default 2): requests/s, success, p99, mTLS, denials, connections, bytes/s
  uninstall [--node NAME | --all]
                         remove every program, link, map and pin Weft made on this host, and the
                         inbound capture rule and route table (in the node's network namespace)`;

type Flags = Record<string, { type: 'string' | 'boolean'; multiple?: boolean }>;

function flags(args: string[], options: Flags): Record<string, string | string[] | boolean | undefined> {
  return parseArgs({ args, options, strict: true, allowPositionals: false }).values as never;
}

const AGENT_FLAGS: Flags = { 'cgroup-root': { type: 'string' }, 'kubepods-cgroup': { type: 'string' }, 'node-ip': { type: 'string', multiple: true }, 'cert-ttl': { type: 'string' },
  'drain-grace': { type: 'string' } };

function agentFlags(f: Record<string, string | string[] | boolean | undefined>): { cgroupRoot?: string; kubepodsCgroup?: string; nodeIps?: string[]; certTtlSeconds?: number; drainGraceMs?: number } {
  const ttl = f['cert-ttl'] === undefined ? undefined : Number(f['cert-ttl']);
  if (ttl !== undefined && !(Number.isInteger(ttl) && ttl >= 10)) throw new Error(`--cert-ttl must be a whole number of seconds, at least 10 (got ${String(f['cert-ttl'])})`);
  const grace = f['drain-grace'] === undefined ? undefined : parseDrainGrace(f['drain-grace'] as string);
  if (grace && !grace.ok) throw new Error(grace.error);
  return {
    ...(f['cgroup-root'] ? { cgroupRoot: f['cgroup-root'] as string } : {}),
    ...(f['kubepods-cgroup'] ? { kubepodsCgroup: f['kubepods-cgroup'] as string } : {}),
    ...(f['node-ip'] ? { nodeIps: f['node-ip'] as string[] } : {}),
    ...(ttl ? { certTtlSeconds: ttl } : {}),
    ...(grace?.ok ? { drainGraceMs: grace.value } : {}),
  };
}

/**
 * In a pod (the kubelet sets KUBERNETES_SERVICE_HOST) the files default to where
 * daemonset/agent.yaml mounts them; elsewhere both flags are needed (the control plane's data directory).
 */
function agentCredentials(tokenFile: string | undefined, caFile: string | undefined): ReturnType<typeof readAgentCredentials> {
  const inPod = process.env.KUBERNETES_SERVICE_HOST !== undefined;
  const token = tokenFile ?? (inPod ? IN_POD_CREDENTIALS.tokenFile : undefined);
  const ca = caFile ?? (inPod ? IN_POD_CREDENTIALS.caFile : undefined);
  if (token === undefined) throw new Error('weft agent needs --token-file (outside Kubernetes: bootstrap.token in the control plane\'s data directory)');
  if (ca === undefined) throw new Error('weft agent needs --ca-file (outside Kubernetes: ca.pem in the control plane\'s data directory)');
  try {
    return readAgentCredentials(token, ca);
  } catch (e) {
    const defaulted = (tokenFile === undefined && (e as Error).message.includes(token)) || (caFile === undefined && (e as Error).message.includes(ca));
    if (!defaulted) throw e;
    throw new Error(`${(e as Error).message}. That is the default in a pod: mount a projected ServiceAccount token with audience weft at ${IN_POD_CREDENTIALS.tokenFile} `
      + `and the ConfigMap weft-trust-bundle at ${dirname(IN_POD_CREDENTIALS.caFile)}, as daemonset/agent.yaml does, or pass --token-file and --ca-file`);
  }
}

/**
 * The first SIGTERM, SIGINT or SIGHUP stops gracefully: an agent closes its listeners (a successor
 * agent on the same node takes the new connections) and drains (--drain-grace). A second signal
 * exits at once, cutting what is left; pinned kernel state stays either way.
 */
function onSignals(stop: () => Promise<void>): void {
  let stopping = false;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (stopping) {
        console.error(JSON.stringify({ msg: `second ${sig} while draining: exiting now, open connections are cut` }));
        process.exit(1);
      }
      stopping = true;
      stop().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
    });
  }
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'local': {
      const f = flags(rest, { config: { type: 'string' }, node: { type: 'string' }, 'data-dir': { type: 'string' }, ...AGENT_FLAGS });
      if (!f.config) throw new Error('weft local needs --config FILE');
      const { runLocal } = await import('./local');
      const running = await runLocal({
        config: f.config as string,
        ...(f.node ? { node: f.node as string } : {}),
        ...(f['data-dir'] ? { dataDir: f['data-dir'] as string } : {}),
        ...agentFlags(f),
      });
      onSignals(running.stop);
      return -1; // keeps running
    }
    case 'controlplane': {
      const f = flags(rest, { config: { type: 'string' }, kubeconfig: { type: 'string' }, listen: { type: 'string' }, 'data-dir': { type: 'string' }, 'ca-secret': { type: 'string' }, 'trust-bundle-configmap': { type: 'string' }, 'serving-name': { type: 'string', multiple: true },
        'leader-elect': { type: 'string' }, 'lease-name': { type: 'string' } });
      const { leaderElectionFlags } = await import('./controlplane/leader-flags');
      const election = leaderElectionFlags({ kube: !f.config, leaderElect: f['leader-elect'] as string | undefined, leaseName: f['lease-name'] as string | undefined, env: process.env });
      if (!election.ok) throw new Error(election.error);
      if (f.config && f['ca-secret']) throw new Error('--ca-secret is for the Kubernetes source; with --config the CA root stays in --data-dir');
      if (f.config && f['trust-bundle-configmap']) throw new Error('--trust-bundle-configmap is for the Kubernetes source; with --config the trust bundle is --data-dir/ca.pem');
      const { startControlPlane } = await import('./controlplane/server');
      const { parseSecretRef } = await import('./controlplane/ca-store-secret');
      const caSecret = f['ca-secret'] ? parseSecretRef(f['ca-secret'] as string) : undefined;
      if (caSecret && !caSecret.ok) throw new Error(`--ca-secret: ${caSecret.error}`);
      const bundleMap = f['trust-bundle-configmap'] ? parseSecretRef(f['trust-bundle-configmap'] as string, 'ConfigMap') : undefined;
      if (bundleMap && !bundleMap.ok) throw new Error(`--trust-bundle-configmap: ${bundleMap.error}`);
      const cp = await startControlPlane({
        listen: (f.listen as string | undefined) ?? '0.0.0.0:15012',
        dataDir: (f['data-dir'] as string | undefined) ?? '/var/lib/weft',
        ...(f['serving-name'] ? { extraServingNames: f['serving-name'] as string[] } : {}),
        source: f.config
          ? { kind: 'file', path: f.config as string }
          : {
            kind: 'kube',
            ...(f.kubeconfig ? { kubeconfig: f.kubeconfig as string } : {}),
            ...(caSecret ? { caSecret: caSecret.value } : {}),
            ...(bundleMap ? { trustBundleConfigMap: bundleMap.value } : {}),
            ...(election.value ? { leaderElection: election.value } : {}),
          },
      });
      console.error(JSON.stringify({ msg: 'control plane ready', address: cp.address }));
      onSignals(() => cp.close());
      return -1;
    }
    case 'agent': {
      const f = flags(rest, { 'control-plane': { type: 'string' }, node: { type: 'string' }, 'token-file': { type: 'string' }, 'ca-file': { type: 'string' }, 'data-dir': { type: 'string' }, ...AGENT_FLAGS });
      for (const needed of ['control-plane', 'node']) {
        if (!f[needed]) throw new Error(`weft agent needs --${needed}`);
      }
      const { parseControlPlaneAddress } = await import('./identity/control-plane-tls');
      parseControlPlaneAddress(f['control-plane'] as string);
      const { runAgent, DEFAULT_AGENT_DATA_DIR } = await import('./node/run-agent');
      const running = await runAgent({
        controlPlane: f['control-plane'] as string,
        node: f.node as string,
        dataDir: (f['data-dir'] as string | undefined) ?? DEFAULT_AGENT_DATA_DIR,
        ...agentCredentials(f['token-file'] as string | undefined, f['ca-file'] as string | undefined),
        ...agentFlags(f),
      });
      onSignals(running.stop);
      return -1;
    }
    case 'demo': {
      flags(rest, {});
      const { runDemo } = await import('./demo');
      return runDemo();
    }
    case 'explain': {
      const { values: f, positionals } = parseArgs({ args: rest, strict: true, allowPositionals: true,
        options: { config: { type: 'string' }, admin: { type: 'string' }, host: { type: 'string' }, header: { type: 'string', multiple: true } } });
      const { explainCommand } = await import('./node/explain-command');
      const out = await explainCommand(positionals, { ...f, header: f.header ?? [] }, `127.0.0.1:${PORTS.admin}`);
      process.stdout.write(out.text);
      return out.code;
    }
    case 'status': {
      const f = flags(rest, { admin: { type: 'string' }, web: { type: 'boolean' } });
      const admin = (f.admin as string | undefined) ?? `127.0.0.1:${PORTS.admin}`;
      if (f.web) {
        const { fetchLiveFeed } = await import('./node/top-command');
        await fetchLiveFeed(admin); // says what to check when the agent is not there
        console.log(`http://${admin}/live`);
        return 0;
      }
      const get = async (path: string) => {
        const res = await fetch(`http://${admin}${path}`).catch((e: Error) => {
          throw new Error(`cannot reach the agent's admin API at ${admin} (${e.message}); is 'weft local' or 'weft agent' running on this host?`);
        });
        return res.json();
      };
      const [workloads, certs, redirect, routes, services, live] = await Promise.all([get('/workloads'), get('/certs'), get('/redirect'), get('/routes'), get('/services'), get('/live.json')]);
      console.log(JSON.stringify({ workloads, certs, redirect, routes, services, live }, null, 2));
      return 0;
    }
    case 'top': {
      const f = flags(rest, { admin: { type: 'string' }, interval: { type: 'string' }, once: { type: 'boolean' }, limit: { type: 'string' } });
      const { topCommand, topOptions } = await import('./node/top-command');
      const o = topOptions(f as { admin?: string; interval?: string; once?: boolean; limit?: string }, `127.0.0.1:${PORTS.admin}`);
      if (!o.ok) throw new Error(`weft top: ${o.error}`);
      const stop = new AbortController();
      process.once('SIGINT', () => stop.abort());
      return topCommand(o.value, process.stdout, stop.signal);
    }
    case 'uninstall': {
      const f = flags(rest, { node: { type: 'string' }, all: { type: 'boolean' } });
      const { installedNodes, uninstallNode } = await import('./redirect/datapath');
      const nodes = f.all ? installedNodes() : [(f.node as string | undefined) ?? (await import('node:os')).hostname()];
      for (const n of nodes) {
        const removed = uninstallNode(n);
        const routing = removed.filter((r) => r.startsWith('ip '));
        console.log(`node ${n}: removed ${removed.length - routing.length} pinned objects (programs, links and maps go with them)` +
          `${routing.length ? ` and the inbound capture routing (${routing.length} rules and routes)` : ''}`);
      }
      return 0;
    }
    case undefined: case '-h': case '--help': case 'help':
      console.log(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      console.error(`weft: unknown command ${JSON.stringify(cmd)}\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => { if (code >= 0) process.exit(code); },
  (e: Error) => { console.error(`weft: ${e.message}`); process.exit(1); },
);
