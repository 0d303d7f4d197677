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
