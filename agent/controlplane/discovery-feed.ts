import type { Snapshot } from '../config/objects';
import type { VersionedSnapshot } from './discovery-wire';

export type FeedListener = (latest: VersionedSnapshot) => void;

/**
 * The control plane's desired state as a versioned value: sources publish whole snapshots, the
 * discovery streams and the certificate authorizer read the latest. Versions start from the wall
 * clock in ms so they keep increasing across restarts unless the clock steps back. A published
 * snapshot, and every object in it, is never changed afterwards: readers (discovery-delta.ts)
 * cache by object.
 */
export class SnapshotFeed {
  private latest: VersionedSnapshot;
  private readonly listeners = new Set<FeedListener>();

  constructor(initial: Snapshot, private readonly clock: () => number = Date.now) {
    this.latest = { version: Math.max(1, clock()), snapshot: initial };
  }

  current(): VersionedSnapshot {
    return this.latest;
  }

  publish(snapshot: Snapshot): void {
    this.latest = { version: Math.max(this.latest.version + 1, this.clock()), snapshot };
    for (const listener of [...this.listeners]) listener(this.latest);
  }

  /** Returns the unsubscribe function. */
  subscribe(listener: FeedListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
