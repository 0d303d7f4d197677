// The lab's address plan. Lab n, node i (1-based), pod k (1-based on its node); v6 groups carry
// the same decimal digits as v4 octets, so fd00:244:3::7 is the v6 twin of 10.244.3.7.
export const GATEWAY4 = '169.254.1.1';
export const GATEWAY6 = 'fe80::1';

export const nodeIp4 = (lab: number, node: number): string => `172.30.${lab}.${node}`;
export const nodeIp6 = (lab: number, node: number): string => `fd00:30:${lab}::${node}`;
export const podCidr4 = (node: number): string => `10.244.${node}.0/24`;
export const podCidr6 = (node: number): string => `fd00:244:${node}::/64`;
export const podIp4 = (node: number, pod: number): string => `10.244.${node}.${pod}`;
export const podIp6 = (node: number, pod: number): string => `fd00:244:${node}::${pod}`;

/** Host side of a pod's veth, in its node's netns; at most 12 characters (IFNAMSIZ is 16). */
export const hostIfName = (lab: number, node: number, pod: number): string => `w${lab}n${node}p${pod}`;

/** Octet-sized numbering keeps every address above valid. */
export const MAX_PER_LEVEL = 254;

/**
 * How a node wires its pods, as common CNIs do (see NodeOptions.wiring):
 *   ptp     a veth per pod, a /32 (/128) host route to it, the gateway on the node's lo (Calico, ptp)
 *   subnet  a veth per pod whose host side holds the gateway of the pod's own /30 (a connected route)
 *   bridge  veths enslaved to the bridge BRIDGE, which holds the gateway of the node's pod /24 (flannel, bridge)
 */
export type Wiring = 'ptp' | 'subnet' | 'bridge';
export const WIRINGS: readonly Wiring[] = ['ptp', 'subnet', 'bridge'];

export const BRIDGE = 'cni0';
/** The bridge's gateway addresses: the last of the node's pod range, so pods keep podIp4/podIp6. */
export const bridgeGateway4 = (node: number): string => `10.244.${node}.254`;
export const bridgeGateway6 = (node: number): string => `fd00:244:${node}::254`;

/** 'subnet' pods: pod k gets 10.244.<node>.<4k+2> in the /30 at 4k, whose gateway 4k+1 is on the host side. */
export const subnetPodIp4 = (node: number, pod: number): string => `10.244.${node}.${4 * pod + 2}`;
export const subnetGateway4 = (node: number, pod: number): string => `10.244.${node}.${4 * pod + 1}`;
export const MAX_SUBNET_PODS = 62;
