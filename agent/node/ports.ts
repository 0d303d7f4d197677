/** The node agent's ports (DESIGN.md). A module of its own so that CLI verbs that only talk to a running agent load nothing else. */
export const PORTS = { admin: 15000, outbound: 15001, inboundPlaintext: 15006, hbone: 15008, metrics: 15020, health: 15021 } as const;

/**
 * The node proxy's capture ports (docs/capture-ports.md): each captured connect goes to one of them
 * at random, so a pod's connections through the proxy are not all held to the one range of source
 * ports its kernel keeps per destination address and port. Nothing listens on them: the sk_lookup
 * program hands their SYNs to the `outbound` port's listeners.
 */
export const CAPTURE_PORTS = { base: 15040, count: 16 } as const;
