/** The node agent's ports (DESIGN.md). A module of its own so that CLI verbs that only talk to a running agent load nothing else. */
export const PORTS = { admin: 15000, outbound: 15001, inboundPlaintext: 15006, hbone: 15008, metrics: 15020, health: 15021 } as const;
