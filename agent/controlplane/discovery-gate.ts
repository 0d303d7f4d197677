/**
 * A limit on the full states being sent at once over all v2 streams (issue 10): when a fleet
 * (re)connects together, each full state in flight holds a chunk's bytes at the control plane, and
 * the streams beyond the limit wait their turn holding nothing (the full state is computed when the
 * turn comes, at the version then current). Turns are given in the order asked; a ticket released
 * while waiting leaves the queue. Deltas do not pass through here: a stream's deltas never wait
 * behind other streams' full states.
 */
export interface GateTicket {
  /** Ends the turn (or leaves the queue when it has not come yet). Idempotent. */
  release(): void;
}

interface Waiter {
  turn: () => void;
}

export class FullStateGate {
  private running = 0;
  private peak = 0;
  /** Insertion-ordered: the first waiter is served first; a cancelled one is deleted in place. */
  private readonly queue = new Set<Waiter>();

  constructor(readonly limit: number) {
    if (!(Number.isInteger(limit) && limit > 0) && limit !== Infinity) {
      throw new Error(`discovery: the limit on concurrent full states (maxConcurrentFullStates) must be a positive integer, not ${String(limit)}`);
    }
  }

  /** Calls `turn` when a full state may start: at once (before returning) when under the limit, else after those who asked before. */
  acquire(turn: (ticket: GateTicket) => void): GateTicket {
    const waiter: Waiter = { turn: () => undefined };
    let state: 'waiting' | 'running' | 'released' = 'waiting';
    const ticket: GateTicket = {
      release: () => {
        if (state === 'waiting') this.queue.delete(waiter);
        else if (state === 'running') {
          this.running--;
          this.grant();
        }
        state = 'released';
      },
    };
    waiter.turn = () => {
      state = 'running';
      turn(ticket);
    };
    this.queue.add(waiter);
    this.grant();
    return ticket;
  }

  /** Full states being sent now. */
  inFlight(): number {
    return this.running;
  }

  /** Streams waiting for their turn. */
  waiting(): number {
    return this.queue.size;
  }

  /** Most full states ever in flight at once (for tests and the bench). */
  peakInFlight(): number {
    return this.peak;
  }

  private grant(): void {
    while (this.running < this.limit && this.queue.size > 0) {
      const first = this.queue.values().next().value as Waiter;
      this.queue.delete(first);
      this.running++;
      this.peak = Math.max(this.peak, this.running);
      first.turn();
    }
  }
}
