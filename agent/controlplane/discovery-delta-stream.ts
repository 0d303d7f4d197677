import { encodeDeltaResponseFramed } from './discovery-proto';
import type { DeltaIndex, NodeMessage } from './discovery-delta';
import type { MessageSink } from './discovery-writer';

/**
 * One v2 Watch stream: what its node's agent holds, and what to send it next. At most one message
 * is in flight; changes published meanwhile are not queued but folded into ONE delta computed,
 * when the message has left, from the version that message brought the agent to
 * (DeltaIndex.next). So memory per stream is one version number whatever the consumer's pace, and
 * no change is lost: a removal then a re-add, or an add then a removal, comes out as the
 * difference between the two states, as it should.
 */
export class DeltaStream {
  /** The version the agent holds once everything written so far has arrived. */
  private held: number | undefined;
  /**
   * The latest version whose view of the node is the one the agent holds: ahead of `held` when
   * changes since did not touch the node (nothing was sent for them). Deltas are computed from
   * here and applied by the agent on `held`.
   */
  private basis: number | undefined;
  private inFlight = false;
  private pending = false;
  private stopped = false;
  private written = 0;

  constructor(
    private readonly index: DeltaIndex,
    private readonly node: string,
    private readonly sink: MessageSink<Buffer>,
  ) {}

  /**
   * The first message: a delta from the agent's resume point when this control plane can compute
   * one (same epoch, version still in its history), else the full state. A resume that needs no
   * change still gets an (empty) delta, so the agent knows its state is current.
   * Returns whether the stream resumed.
   */
  start(resume: { epoch: string; version: number } | undefined): boolean {
    if (resume !== undefined && resume.epoch === this.index.epoch && this.index.canResumeFrom(resume.version)) {
      const next = this.index.next(this.node, resume.version);
      this.write(next.kind === 'send' ? next : {
        kind: 'send',
        header: { systemVersion: this.index.currentVersion(), epoch: this.index.epoch, fullState: false, baseVersion: resume.version, removed: [] },
        entries: [],
      });
      return true;
    }
    this.write(this.index.full(this.node));
    return false;
  }

  /** A new version was published: send what changed for this node, now or when the in-flight message has left. */
  changed(): void {
    if (this.stopped || this.basis === undefined) return;
    if (this.inFlight) {
      this.pending = true;
      return;
    }
    const next = this.index.next(this.node, this.basis);
    if (next.kind === 'unchanged') this.basis = this.index.currentVersion();
    else if (next.header.fullState) this.write(next);
    else this.write({ ...next, header: { ...next.header, baseVersion: this.held! } });
  }

  /** Messages written (for tests and logs). */
  messagesWritten(): number {
    return this.written;
  }

  /** Further changes are ignored. */
  stop(): void {
    this.stopped = true;
  }

  private write(m: NodeMessage & { kind: 'send' }): void {
    this.held = m.header.systemVersion;
    this.basis = m.header.systemVersion;
    this.inFlight = true;
    this.written++;
    this.sink.write(encodeDeltaResponseFramed(m.header, m.entries), (error) => {
      this.inFlight = false;
      if (error) this.stopped = true;
      if (this.pending) {
        this.pending = false;
        this.changed();
      }
    });
  }
}
