/** HTTP/2 flow-control sizes both ends of the tunnel use: per-stream window and the session's window. */
export const TUNNEL_SETTINGS = { initialWindowSize: 1 << 20, enablePush: false } as const;
export const TUNNEL_WINDOW = 16 << 20;
