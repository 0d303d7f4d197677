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
