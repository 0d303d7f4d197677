/**
 * Live TCP connections into this node's meshed pods, kept so that a policy change can re-judge
 * them: a connection the new policy denies is closed at once (as ztunnel and Linkerd do). HTTP
 * connections need no entry: every request is judged against the policy in force when it arrives.
 */
export interface LiveConnection<Facts> {
  facts: Facts;
  /** Cuts the connection; `reason` goes to its access-log line. */
  close(reason: string): void;
}

export class LiveConnections<Facts> {
  private readonly live = new Set<LiveConnection<Facts>>();

  /** Tracks a connection until it is removed (when it ends). */
  add(connection: LiveConnection<Facts>): void {
    this.live.add(connection);
  }

  remove(connection: LiveConnection<Facts>): void {
    this.live.delete(connection);
  }

  get size(): number {
    return this.live.size;
  }

  /** Closes every connection `denies` names a reason for; returns how many were closed. */
  recheck(denies: (facts: Facts) => string | undefined): number {
    let closed = 0;
    for (const c of [...this.live]) {
      const reason = denies(c.facts);
      if (reason === undefined) continue;
      this.live.delete(c);
      c.close(reason);
      closed++;
    }
    return closed;
  }
}
