import type { Server, Socket } from 'node:net';

/**
 * One shutdown helper for every listener: close() stops accepting and lets live connections
 * finish within a grace period, then cuts them; destroy() cuts at once.
 */
export class Drainer {
  private readonly live = new Set<Socket>();

  constructor(private readonly servers: Server[]) {}

  track(s: Socket): void {
    this.live.add(s);
    s.once('close', () => this.live.delete(s));
  }

  get connections(): number {
    return this.live.size;
  }

  async close(graceMs = 5000): Promise<void> {
    const closing = this.servers.map((srv) => new Promise<void>((r) => srv.close(() => r())));
    const deadline = Date.now() + graceMs;
    while (this.live.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    this.destroy();
    await Promise.all(closing);
  }

  destroy(): void {
    for (const srv of this.servers) srv.close();
    for (const s of this.live) s.destroy();
    this.live.clear();
  }
}
