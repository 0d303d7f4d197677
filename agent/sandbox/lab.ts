// The lab builder: nodes as netns on a shared bridge, pods as netns + veth into their node,
// each with its own cgroup v2 directory. See addresses.ts for the address plan.
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as addr from './addresses';
import { cgroupId } from './cgroup';
import { manifests, toYamlStream, type ManifestOptions, type NodeFacts, type PodFacts } from './manifests';
import { addNetns, inNetnsAndCgroup, ipBatch, sysctl } from './netns';
import { ProcessTracker } from './processes';
import * as registry from './registry';
import type { ExecOptions, ExecResult } from './run';

const NAME = /^[a-z][a-z0-9]{0,11}$/;
const MEMBER_NAME = /^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$/;
const STOP_GRACE_MS = 3_000;

/** Sysctls every netns of the lab gets before its interfaces exist, so new devices inherit them. */
const BASE_SYSCTLS = {
  'net.ipv6.conf.all.accept_dad': 0,
  'net.ipv6.conf.default.accept_dad': 0,
  'net.ipv4.conf.all.rp_filter': 2,
  'net.ipv4.conf.default.rp_filter': 2,
};

export interface NodeOptions {
  /** How the node wires its pods (addresses.ts Wiring); default 'ptp' */
  wiring?: addr.Wiring;
}

export interface PodOptions {
  namespace?: string;
  serviceAccount?: string;
  ipv6?: boolean;
  /** default { app: <pod name> } */
  labels?: Record<string, string>;
  /** Lay the pod's cgroups out as a kubelet does (see KubeletLayout) instead of `<node>/pods/<name>`. */
  kubelet?: KubeletLayout;
}

/**
 * A pod as the kubelet and containerd lay it out under the node's cgroup: a pod cgroup named after
 * its UID in a kubepods tree (by cgroup driver and QoS class), with the pod's processes in a
 * container child of it. Its manifest carries `metadata.uid` and no `weft.dev/cgroup` annotation,
 * as a pod from the Kubernetes API would.
 */
export interface KubeletLayout {
  /** default 'systemd' */
  driver?: 'systemd' | 'cgroupfs';
  /** default 'burstable' */
  qos?: 'guaranteed' | 'burstable' | 'besteffort';
  /** default a random UUID */
  uid?: string;
}

/** The pod and container cgroups a kubelet (and containerd) would make, relative to the node's cgroup. Spelled out here, independently of the agent's resolver. */
function kubeletCgroups(layout: KubeletLayout & { uid: string }): { pod: string; container: string } {
  const qos = layout.qos ?? 'burstable';
  const containerId = crypto.randomBytes(32).toString('hex');
  if (layout.driver === 'cgroupfs') {
    const pod = path.join('kubepods', ...(qos === 'guaranteed' ? [] : [qos]), `pod${layout.uid}`);
    return { pod, container: path.join(pod, containerId) };
  }
  const uid = layout.uid.replace(/-/g, '_');
  const pod = qos === 'guaranteed'
    ? path.join('kubepods.slice', `kubepods-pod${uid}.slice`)
    : path.join('kubepods.slice', `kubepods-${qos}.slice`, `kubepods-${qos}-pod${uid}.slice`);
  return { pod, container: path.join(pod, `cri-containerd-${containerId}.scope`) };
}

/** Something that runs processes inside a netns and a cgroup. */
abstract class Place {
  abstract readonly netns: string;
  protected abstract readonly tracker: ProcessTracker;
  /** the cgroup processes started here run in */
  protected abstract readonly spawnCgroup: string;

  spawn(cmd: string, args: string[] = [], opts: SpawnOptions = {}): ChildProcess {
    return this.tracker.spawn(inNetnsAndCgroup(this.netns, this.spawnCgroup, cmd, args), opts);
  }

  exec(cmd: string, args: string[] = [], opts: ExecOptions = {}): Promise<ExecResult> {
    const argv = inNetnsAndCgroup(this.netns, this.spawnCgroup, cmd, args);
    return this.tracker.exec(argv, `[${this.netns}] ${cmd} ${args.join(' ')}`, opts);
  }
}

interface PodInit {
  node: LabNode;
  name: string;
  netns: string;
  hostIf: string;
  ip: string;
  ip6: string | undefined;
  cgroupPath: string;
  /** where the pod's processes run: cgroupPath, or a container child of it */
  processCgroupPath: string;
  uid: string | undefined;
  namespace: string;
  serviceAccount: string;
  labels: Record<string, string>;
}

export class LabPod extends Place implements PodInit {
  readonly node: LabNode;
  readonly name: string;
  readonly netns: string;
  /** host side of the pod's veth, in the node's netns */
  readonly hostIf: string;
  readonly ip: string;
  readonly ip6: string | undefined;
  readonly cgroupPath: string;
  /** the kernel's cgroup id (inode of cgroupPath), what redirect programs record */
  readonly cgroupId: bigint;
  /** where the pod's processes run: cgroupPath, or for a kubelet layout its container child */
  readonly processCgroupPath: string;
  /** metadata.uid, for a kubelet layout */
  readonly uid: string | undefined;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly labels: Record<string, string>;
  protected readonly spawnCgroup: string;

  constructor(init: PodInit, protected readonly tracker: ProcessTracker) {
    super();
    ({ node: this.node, name: this.name, netns: this.netns, hostIf: this.hostIf, ip: this.ip, ip6: this.ip6 } = init);
    ({ cgroupPath: this.cgroupPath, namespace: this.namespace, serviceAccount: this.serviceAccount, labels: this.labels } = init);
    ({ processCgroupPath: this.processCgroupPath, uid: this.uid } = init);
    this.spawnCgroup = init.processCgroupPath;
    this.cgroupId = cgroupId(init.cgroupPath);
  }

  facts(): PodFacts {
    const { name, namespace, serviceAccount, labels, ip, ip6, cgroupPath, uid } = this;
    return { name, namespace, serviceAccount, labels, ip, ip6, cgroupPath, ...(uid ? { uid } : {}), nodeName: this.node.name, hostIp: this.node.ip };
  }
}

export class LabNode extends Place {
  readonly pods: LabPod[] = [];
  readonly systemCgroupPath: string;
  protected readonly spawnCgroup: string;

  constructor(
    readonly lab: Lab,
    /** Kubernetes node name, `<lab name>-<short>`: also the agent's --node and its /sys/fs/bpf/weft/<name> */
    readonly name: string,
    readonly index: number,
    readonly netns: string,
    readonly ip: string,
    readonly ip6: string,
    readonly cgroupPath: string,
    protected readonly tracker: ProcessTracker,
    /** how this node wires its pods */
    readonly wiring: addr.Wiring = 'ptp',
  ) {
    super();
    this.systemCgroupPath = path.join(cgroupPath, 'system');
    this.spawnCgroup = this.systemCgroupPath;
  }

  /** Routes from this node to another node's pods, through that node's underlay address. */
  routesTo(other: LabNode): string[] {
    return [
      `route add ${addr.podCidr4(other.index)} via ${other.ip} dev eth0`,
      `route add ${addr.podCidr6(other.index)} via ${other.ip6} dev eth0`,
    ];
  }

  async pod(name: string, opts: PodOptions = {}): Promise<LabPod> {
    this.lab.assertOpen();
    if (!MEMBER_NAME.test(name)) throw new Error(`pod name '${name}' must match ${MEMBER_NAME}`);
    if (this.lab.pods().some((p) => p.name === name)) throw new Error(`pod '${name}' already exists in lab ${this.lab.name}`);
    const k = this.pods.length + 1;
    const max = this.wiring === 'subnet' ? addr.MAX_SUBNET_PODS : this.wiring === 'bridge' ? addr.MAX_PER_LEVEL - 1 : addr.MAX_PER_LEVEL;
    if (k > max) throw new Error(`node ${this.name} already has ${max} pods (wiring ${this.wiring})`);
    if (opts.ipv6 && this.wiring === 'subnet') throw new Error(`pod '${name}': ipv6 is not offered with wiring 'subnet' (node ${this.name}); use 'ptp' or 'bridge'`);
    const ns = `${this.netns}-${name}`;
    const hostIf = addr.hostIfName(this.lab.index, this.index, k);
    const ip = this.wiring === 'subnet' ? addr.subnetPodIp4(this.index, k) : addr.podIp4(this.index, k);
    const ip6 = opts.ipv6 ? addr.podIp6(this.index, k) : undefined;
    const uid = opts.kubelet ? (opts.kubelet.uid ?? crypto.randomUUID()) : undefined;
    const kubelet = opts.kubelet && kubeletCgroups({ ...opts.kubelet, uid: uid! });
    const cgroupPath = kubelet ? path.join(this.cgroupPath, kubelet.pod) : path.join(this.cgroupPath, 'pods', name);
    const processCgroupPath = kubelet ? path.join(this.cgroupPath, kubelet.container) : cgroupPath;

    await addNetns(ns);
    await sysctl(ns, BASE_SYSCTLS);
    await this.wire(ns, hostIf, k, ip, ip6);
    fs.mkdirSync(processCgroupPath, { recursive: true });
    const pod = new LabPod(
      {
        node: this, name, netns: ns, hostIf, ip, ip6, cgroupPath, processCgroupPath, uid,
        namespace: opts.namespace ?? 'default', serviceAccount: opts.serviceAccount ?? 'default', labels: opts.labels ?? { app: name },
      },
      this.tracker,
    );
    this.pods.push(pod);
    return pod;
  }

  /** The pod's veth and addresses on both sides, as this node's wiring lays them out. */
  private async wire(ns: string, hostIf: string, k: number, ip: string, ip6: string | undefined): Promise<void> {
    const veth = [`link add ${hostIf} type veth peer name eth0 netns ${ns}`];
    const podSide = ['link set lo up', 'link set eth0 up'];
    if (this.wiring === 'ptp') {
      await ipBatch(this.netns, [...veth,
        `link set ${hostIf} up`,
        `route add ${ip}/32 dev ${hostIf}`,
        ...(ip6 ? [`addr add ${addr.GATEWAY6}/64 dev ${hostIf} nodad`, `route add ${ip6}/128 dev ${hostIf}`] : []),
      ]);
      await sysctl(this.netns, { [`net.ipv4.conf.${hostIf}.proxy_arp`]: 1 });
      await ipBatch(ns, [...podSide,
        `addr add ${ip}/32 dev eth0`,
        `route add ${addr.GATEWAY4} dev eth0 scope link`,
        `route add default via ${addr.GATEWAY4} dev eth0`,
        ...(ip6 ? [`addr add ${ip6}/128 dev eth0 nodad`, `route add default via ${addr.GATEWAY6} dev eth0`] : []),
      ]);
    } else if (this.wiring === 'subnet') {
      const gw = addr.subnetGateway4(this.index, k);
      await ipBatch(this.netns, [...veth, `addr add ${gw}/30 dev ${hostIf}`, `link set ${hostIf} up`]);
      await ipBatch(ns, [...podSide, `addr add ${ip}/30 dev eth0`, `route add default via ${gw} dev eth0`]);
    } else {
      await ipBatch(this.netns, [...veth, `link set ${hostIf} master ${addr.BRIDGE} up`]);
      await ipBatch(ns, [...podSide,
        `addr add ${ip}/24 dev eth0`,
        `route add default via ${addr.bridgeGateway4(this.index)} dev eth0`,
        ...(ip6 ? [`addr add ${ip6}/64 dev eth0 nodad`, `route add default via ${addr.bridgeGateway6(this.index)} dev eth0`] : []),
      ]);
    }
  }

  facts(): NodeFacts {
    const i = this.index;
    return { name: this.name, ip: this.ip, ip6: this.ip6, podCidr: addr.podCidr4(i), podCidr6: addr.podCidr6(i) };
  }
}

export interface LabOptions {
  /** short human name ([a-z][a-z0-9]{0,11}); node names are `<name>-<node>` */
  name: string;
}

export class Lab {
  readonly nodes: LabNode[] = [];
  private readonly tracker = new ProcessTracker();
  private closing: Promise<void> | undefined;
  private closedSync = false;

  private constructor(
    private readonly record: registry.LabRecord,
    readonly cgroupPath: string,
  ) {}

  get name(): string {
    return this.record.name;
  }
  /** the <lab> of the address plan, unique among live labs on this machine */
  get index(): number {
    return this.record.index;
  }
  private get fabric(): string {
    return `${registry.labNetnsPrefix(this.index)}fabric`;
  }

  /** Sweeps leftovers of crashed runs, claims an index, builds the fabric (a bridge in its own netns). */
  static async create(opts: LabOptions): Promise<Lab> {
    if (!NAME.test(opts.name)) throw new Error(`lab name '${opts.name}' must match ${NAME}`);
    const swept = registry.sweepStale();
    if (swept.length) process.stderr.write(`weft lab: sweeping stale leftovers failed in part:\n  ${swept.join('\n  ')}\n`);
    const record = registry.claimRecord(opts.name);
    const lab = new Lab(record, registry.labCgroupDir(record.index));
    registry.registerOpen(lab);
    try {
      fs.mkdirSync(lab.cgroupPath);
      await addNetns(lab.fabric);
      await ipBatch(lab.fabric, ['link set lo up', 'link add br0 type bridge mcast_snooping 0', 'link set br0 up']);
    } catch (err) {
      const cleanup = await lab.close().then(() => '', (e: Error) => `; then ${e.message}`);
      throw new Error(`lab ${opts.name}: creation failed: ${(err as Error).message}${cleanup}`, { cause: err });
    }
    return lab;
  }

  assertOpen(): void {
    if (this.closing || this.closedSync) throw new Error(`lab ${this.name} is closed`);
  }

  async node(short: string, opts: NodeOptions = {}): Promise<LabNode> {
    const wiring = opts.wiring ?? 'ptp';
    if (!addr.WIRINGS.includes(wiring)) throw new Error(`node '${short}': wiring '${String(wiring)}' must be one of ${addr.WIRINGS.join(', ')}`);
    this.assertOpen();
    if (!MEMBER_NAME.test(short)) throw new Error(`node name '${short}' must match ${MEMBER_NAME}`);
    const name = `${this.name}-${short}`;
    if (this.nodes.some((n) => n.name === name)) throw new Error(`node '${short}' already exists in lab ${this.name}`);
    const i = this.nodes.length + 1;
    if (i > addr.MAX_PER_LEVEL) throw new Error(`lab ${this.name} already has ${addr.MAX_PER_LEVEL} nodes`);
    const ns = `${registry.labNetnsPrefix(this.index)}${short}`;
    const node = new LabNode(
      this, name, i, ns, addr.nodeIp4(this.index, i), addr.nodeIp6(this.index, i), path.join(this.cgroupPath, short), this.tracker, wiring,
    );
    this.record.nodes.push(name);
    registry.saveRecord(this.record);

    await addNetns(ns);
    await sysctl(ns, { ...BASE_SYSCTLS, 'net.ipv4.ip_forward': 1, 'net.ipv6.conf.all.forwarding': 1 });
    await ipBatch(this.fabric, [`link add n${i} type veth peer name eth0 netns ${ns}`, `link set n${i} master br0 up`]);
    // proxy_arp answers only for targets the node routes elsewhere, and a node has no default
    // route (nothing leaves the lab): the pods' gateway address lives on the node's lo.
    await ipBatch(ns, [
      'link set lo up',
      'link set eth0 up',
      `addr add ${node.ip}/24 dev eth0`,
      `addr add ${node.ip6}/64 dev eth0 nodad`,
      `addr add ${addr.GATEWAY4}/32 dev lo`,
      ...this.nodes.flatMap((other) => node.routesTo(other)),
      // 'bridge': the pods' L2 segment and its gateway (the connected /24 routes the node's pods there)
      ...(wiring === 'bridge' ? [
        `link add ${addr.BRIDGE} type bridge mcast_snooping 0`,
        `addr add ${addr.bridgeGateway4(i)}/24 dev ${addr.BRIDGE}`,
        `addr add ${addr.bridgeGateway6(i)}/64 dev ${addr.BRIDGE} nodad`,
        `link set ${addr.BRIDGE} up`,
      ] : []),
    ]);
    for (const other of this.nodes) await ipBatch(other.netns, other.routesTo(node));
    fs.mkdirSync(node.systemCgroupPath, { recursive: true });
    fs.mkdirSync(path.join(node.cgroupPath, 'pods'));
    this.nodes.push(node);
    return node;
  }

  pods(): LabPod[] {
    return this.nodes.flatMap((n) => n.pods);
  }

  manifests(opts: ManifestOptions = {}): object[] {
    return manifests(this.nodes.map((n) => n.facts()), this.pods().map((p) => p.facts()), opts);
  }

  /** The YAML stream for `weft local --config`. */
  yaml(opts: ManifestOptions = {}): string {
    return toYamlStream(this.manifests(opts));
  }

  /**
   * Stops every process the lab started (SIGTERM, then SIGKILL), then removes its cgroups,
   * netns (and so its veths), pinned /sys/fs/bpf/weft/<node> dirs. Idempotent; throws an
   * AggregateError listing everything that could not be removed.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const errors = await this.tracker.stopAll(STOP_GRACE_MS);
      errors.push(...this.closeSync());
      if (errors.length) throw new AggregateError(errors.map((e) => new Error(e)), `lab ${this.name}: cleanup incomplete:\n  ${errors.join('\n  ')}`);
    })();
    return this.closing;
  }

  /** What the exit hooks call: kills, removes, returns what went wrong. */
  closeSync(): string[] {
    if (this.closedSync) return [];
    this.closedSync = true;
    registry.unregisterOpen(this);
    this.tracker.killAllSync();
    return registry.teardownSync(this.record);
  }
}
