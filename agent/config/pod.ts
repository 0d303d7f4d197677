import { isAbsolute, posix } from 'node:path';
import { join, type Checker, type Fields } from './checker';
import type { Metadata } from './metadata';
import { CGROUP_ANNOTATION, type PodInfo } from './objects';
import { isPodUid } from './pod-uid';

/** PodSpec fields Weft reads (`serviceAccount` is the deprecated spelling of `serviceAccountName`). */
const SPEC_READ = ['nodeName', 'serviceAccountName', 'serviceAccount', 'hostNetwork'];
/** Standard PodSpec fields real manifests carry; accepted, not read. */
const SPEC_CARRIED = [
  'containers', 'initContainers', 'ephemeralContainers', 'volumes', 'restartPolicy',
  'terminationGracePeriodSeconds', 'activeDeadlineSeconds', 'dnsPolicy', 'dnsConfig', 'nodeSelector',
  'automountServiceAccountToken', 'hostPID', 'hostIPC', 'shareProcessNamespace', 'securityContext',
  'imagePullSecrets', 'hostname', 'subdomain', 'affinity', 'schedulerName', 'tolerations', 'hostAliases',
  'priorityClassName', 'priority', 'readinessGates', 'runtimeClassName', 'enableServiceLinks',
  'preemptionPolicy', 'overhead', 'topologySpreadConstraints', 'setHostnameAsFQDN', 'os', 'hostUsers',
  'schedulingGates', 'resourceClaims', 'resources',
];
const SPEC = new Set([...SPEC_READ, ...SPEC_CARRIED]);
const STATUS = new Set([
  'podIP', 'podIPs', 'phase', 'conditions', 'hostIP', 'hostIPs', 'startTime', 'containerStatuses',
  'initContainerStatuses', 'ephemeralContainerStatuses', 'qosClass', 'message', 'reason',
  'nominatedNodeName', 'resize', 'resourceClaimStatuses',
]);
const POD_IP = new Set(['ip']);
const CONDITION = new Set(['type', 'status', 'lastProbeTime', 'lastTransitionTime', 'message', 'reason', 'observedGeneration']);
const CONDITION_STATUSES = ['True', 'False', 'Unknown'] as const;
const PHASES = ['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown'] as const;
const CONTAINER_PORT = new Set(['containerPort', 'name', 'protocol', 'hostPort', 'hostIP']);
const PROTOCOLS = ['TCP', 'UDP', 'SCTP'] as const;
/** IANA_SVC_NAME, as Kubernetes validates port names: at most 15 of a-z, 0-9, '-', with a letter, no '--', no '-' at either end. */
const PORT_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

export const DEFAULT_SERVICE_ACCOUNT = 'default';

export interface ConvertedPod {
  pod: PodInfo;
  /** A host-network pod shares its node's addresses with other such pods. */
  hostNetwork: boolean;
}

export function convertPod(c: Checker, obj: Fields, meta: Metadata): ConvertedPod {
  const spec = c.mapping(obj.spec, 'spec') ?? {};
  c.allowOnly(spec, 'spec', SPEC);
  const status = c.mapping(obj.status, 'status') ?? {};
  c.allowOnly(status, 'status', STATUS);

  const pod: PodInfo = {
    namespace: meta.namespace,
    name: meta.name,
    labels: meta.labels,
    annotations: meta.annotations,
    nodeName: c.dnsSubdomain(spec.nodeName, 'spec.nodeName') ?? '',
    serviceAccount: serviceAccountOf(c, spec),
    ips: podIps(c, status),
  };
  const cgroupPath = cgroupPathOf(c, meta.annotations[CGROUP_ANNOTATION]);
  if (cgroupPath !== undefined) pod.cgroupPath = cgroupPath;
  const uid = podUidOf(c, meta.uid);
  if (uid !== undefined) pod.uid = uid;
  if (!readyOf(c, status)) pod.ready = false;
  if (meta.deletionTimestamp !== undefined) pod.terminating = true;
  const containerPorts = containerPortsOf(c, spec.containers);
  if (Object.keys(containerPorts).length > 0) pod.containerPorts = containerPorts;
  const hostNetwork = spec.hostNetwork === undefined ? false : c.boolean(spec.hostNetwork, 'spec.hostNetwork') ?? false;
  return { pod, hostNetwork };
}

function serviceAccountOf(c: Checker, spec: Fields): string {
  const name = spec.serviceAccountName === undefined ? undefined : c.dnsSubdomain(spec.serviceAccountName, 'spec.serviceAccountName');
  const deprecated = spec.serviceAccount === undefined ? undefined : c.dnsSubdomain(spec.serviceAccount, 'spec.serviceAccount');
  if (name !== undefined && deprecated !== undefined && name !== deprecated) {
    c.fail('spec.serviceAccount', `disagrees with spec.serviceAccountName "${name}" (serviceAccount is its deprecated alias)`);
  }
  return name ?? deprecated ?? DEFAULT_SERVICE_ACCOUNT;
}

/** `status.podIP` then `status.podIPs`, deduplicated; a pod in the config is running, so one is required. */
function podIps(c: Checker, status: Fields): string[] {
  const ips: string[] = [];
  const add = (ip: string | undefined): void => {
    if (ip !== undefined && !ips.includes(ip)) ips.push(ip);
  };
  if (status.podIP !== undefined) add(c.ip(status.podIP, 'status.podIP'));
  const list = status.podIPs === undefined ? [] : (c.list(status.podIPs, 'status.podIPs') ?? []);
  list.forEach((entry, i) => {
    const field = join('status.podIPs', i);
    const item = c.mapping(entry, field);
    if (!item) return;
    c.allowOnly(item, field, POD_IP);
    add(c.ip(item.ip, `${field}.ip`));
  });
  if (status.podIP === undefined && list.length === 0) c.fail('status.podIP', 'must be set: a Pod in the config is a running pod with an address');
  return ips;
}

/**
 * As Kubernetes' EndpointSlice controller decides readiness (podutil.IsPodReady): the pod's `Ready`
 * condition is True. A config file often leaves conditions out: then a pod whose phase is Running
 * or unset is ready, so configs written before readiness was read keep working. A pod that has
 * finished (Succeeded, Failed) is never ready.
 */
function readyOf(c: Checker, status: Fields): boolean {
  const phase = status.phase === undefined ? undefined : c.oneOf(status.phase, 'status.phase', PHASES);
  if (phase === 'Succeeded' || phase === 'Failed') return false;
  if (status.conditions === undefined) return phase === undefined || phase === 'Running';
  let ready = false;
  const seen = new Set<string>();
  (c.list(status.conditions, 'status.conditions') ?? []).forEach((entry, i) => {
    const field = join('status.conditions', i);
    const condition = c.mapping(entry, field);
    if (!condition) return;
    c.allowOnly(condition, field, CONDITION);
    const type = c.string(condition.type, `${field}.type`);
    const value = c.oneOf(condition.status, `${field}.status`, CONDITION_STATUSES);
    if (type === undefined) return;
    if (seen.has(type)) c.fail(`${field}.type`, `"${type}" appears twice in status.conditions`);
    seen.add(type);
    if (type === 'Ready') ready = value === 'True';
  });
  return ready;
}

/**
 * Named TCP ports of the pod's containers. As Kubernetes, a name is unique within a container and a
 * named targetPort takes the first container that has it (podutil.FindPort). Only the ports are
 * read; the rest of each container is carried.
 */
function containerPortsOf(c: Checker, value: unknown): Record<string, number> {
  const named: Record<string, number> = {};
  if (value === undefined) return named;
  (c.list(value, 'spec.containers') ?? []).forEach((entry, i) => {
    const field = join('spec.containers', i);
    const container = c.mapping(entry, field);
    if (!container || container.ports === undefined) return;
    const inContainer = new Map<string, string>();
    (c.list(container.ports, `${field}.ports`) ?? []).forEach((raw, j) => {
      const portField = join(`${field}.ports`, j);
      const port = c.mapping(raw, portField);
      if (!port) return;
      c.allowOnly(port, portField, CONTAINER_PORT);
      const number = c.port(port.containerPort, `${portField}.containerPort`);
      const protocol = port.protocol === undefined ? 'TCP' : c.oneOf(port.protocol, `${portField}.protocol`, PROTOCOLS);
      if (port.hostPort !== undefined) c.port(port.hostPort, `${portField}.hostPort`);
      if (port.hostIP !== undefined) c.ip(port.hostIP, `${portField}.hostIP`);
      if (port.name === undefined) return;
      const name = portName(c, port.name, `${portField}.name`);
      if (name === undefined) return;
      const first = inContainer.get(name);
      if (first !== undefined) {
        c.fail(`${portField}.name`, `"${name}" is already the name of ${first} (port names are unique within a container)`);
        return;
      }
      inContainer.set(name, portField);
      if (protocol === 'TCP' && number !== undefined && !(name in named)) named[name] = number;
    });
  });
  return named;
}

/** A port name a Service's targetPort can refer to (IANA_SVC_NAME). */
function portName(c: Checker, value: unknown, field: string): string | undefined {
  const name = c.string(value, field);
  if (name === undefined) return undefined;
  if (name.length <= 15 && PORT_NAME.test(name) && /[a-z]/.test(name) && !name.includes('--')) return name;
  c.fail(field, `"${name}" is not a port name (at most 15 of a-z, 0-9 and '-', with at least one letter, no '--', not starting or ending with '-')`);
  return undefined;
}

/**
 * `metadata.uid`: where a Pod has no cgroup annotation, the agent finds the kubelet's cgroup by it
 * (Kubernetes-style nodes), so it must be a UID the kubelet names cgroups after.
 */
function podUidOf(c: Checker, uid: string | undefined): string | undefined {
  if (uid === undefined) return undefined;
  if (!isPodUid(uid)) {
    c.fail('metadata.uid', `"${uid}" must be a Kubernetes UID (letters, digits and dashes, e.g. a UUID)`);
    return undefined;
  }
  return uid;
}

function cgroupPathOf(c: Checker, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const field = join('metadata.annotations', CGROUP_ANNOTATION);
  if (!isAbsolute(value)) {
    c.fail(field, `"${value}" must be an absolute path to the pod's cgroup v2 directory`);
    return undefined;
  }
  if (value.split('/').includes('..')) {
    c.fail(field, `"${value}" must not contain ".." segments`);
    return undefined;
  }
  return posix.normalize(value).replace(/(.)\/$/, '$1');
}
