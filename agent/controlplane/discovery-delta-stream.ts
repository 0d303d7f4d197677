import { ChunkedSequence, DEFAULT_CHUNK_BYTES } from './discovery-chunks';
import type { DeltaIndex, NodeMessage } from './discovery-delta';
import { FullStateGate, type GateTicket } from './discovery-gate';
import type { MessageSink } from './discovery-writer';

export interface DeltaStreamOptions {
  /** Most bytes of resources per message (discovery-chunks.ts; default 512 KiB). */
  chunkBytes?: number;
  /** The limit on full states sent at once, shared by every stream of the control plane (default: none). */
  gate?: FullStateGate;
}

/**
 * One v2 Watch stream: what its node's agent holds, and what to send it next. At most one message
 * is in flight; a message larger than a chunk goes as a sequence of chunks (discovery-chunks.ts),
 * each encoded only when the previous one has left, so the stream holds at most one chunk's bytes.
 * Changes published meanwhile are not queued but folded into ONE delta computed, when the
 * sequence has left, from the version it brought the agent to (DeltaIndex.next). So memory per
 * stream is one version number and at most one chunk whatever the consumer's pace, and no change
 * is lost: a removal then a re-add, or an add then a removal, comes out as the difference between
 * the two states, as it should.
 *
 * A full state first waits for its turn at the gate (the control plane's limit on full states in
 * flight), holding nothing meanwhile; it is computed when the turn comes, at the version current
 * then. Deltas never wait at the gate.
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
  /** The sequence being written, with its gate ticket when it is a full state. */
  private sequence: { chunks: ChunkedSequence; ticket?: GateTicket } | undefined;
  /** Waiting at the gate for a full state's turn. */
  private waiting: GateTicket | undefined;
  private inFlight = false;
  private pending = false;
  private stopped = false;
  private written = 0;
  private readonly chunkBytes: number;
  private readonly gate: FullStateGate | undefined;

  constructor(
    private readonly index: DeltaIndex,
    private readonly node: string,
    private readonly sink: MessageSink<Buffer>,
    options: DeltaStreamOptions = {},
  ) {
    this.chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    this.gate = options.gate;
  }

  /**
   * The first message: a delta from the agent's resume point when this control plane can compute
   * one (same epoch, version still in its history), else the full state (after its turn at the
   * gate). A resume that needs no change still gets an (empty) delta, so the agent knows its state
   * is current. Returns whether the stream resumed.
   */
  start(resume: { epoch: string; version: number } | undefined): boolean {
    if (resume !== undefined && resume.epoch === this.index.epoch && this.index.canResumeFrom(resume.version)) {
      const next = this.index.next(this.node, resume.version);
      this.begin(next.kind === 'send' ? next : {
        kind: 'send',
        header: { systemVersion: this.index.currentVersion(), epoch: this.index.epoch, fullState: false, baseVersion: resume.version, removed: [] },
        entries: [],
      });
      return true;
    }
    this.fullState();
    return false;
  }

  /** A new version was published: send what changed for this node, now or when the sequence in flight has left. */
  changed(): void {
    if (this.stopped || this.basis === undefined) return;
    if (this.inFlight || this.sequence !== undefined || this.waiting !== undefined) {
      this.pending = true;
      return;
    }
    const next = this.index.next(this.node, this.basis);
    if (next.kind === 'unchanged') this.basis = this.index.currentVersion();
    else if (next.header.fullState) this.fullState();
    else this.begin({ ...next, header: { ...next.header, baseVersion: this.held! } });
  }

  /** Messages (chunks) written (for tests and logs). */
  messagesWritten(): number {
    return this.written;
  }

  /** Whether the stream waits at the gate for its full state's turn. */
  waitingForTurn(): boolean {
    return this.waiting !== undefined;
  }

  /** Further changes are ignored; the stream's turn at the gate (held or awaited) is given up. */
  stop(): void {
    this.stopped = true;
    this.waiting?.release();
    this.waiting = undefined;
    this.sequence?.ticket?.release();
    this.sequence = undefined;
  }

  /** The full state at the version current when the gate lets it start. */
  private fullState(): void {
    if (this.gate === undefined) {
      this.begin(this.index.full(this.node));
      return;
    }
    let granted = false;
    const ticket = this.gate.acquire((turn) => {
      granted = true;
      this.waiting = undefined;
      if (this.stopped) turn.release();
      else this.begin(this.index.full(this.node), turn);
    });
    if (!granted) this.waiting = ticket;
  }

  private begin(m: NodeMessage & { kind: 'send' }, ticket?: GateTicket): void {
    const { removed, ...header } = m.header;
    this.held = header.systemVersion;
    this.basis = header.systemVersion;
    const chunks = new ChunkedSequence(header, removed, m.entries[Symbol.iterator](), this.chunkBytes);
    this.sequence = ticket === undefined ? { chunks } : { chunks, ticket };
    this.writeChunk();
  }

  private writeChunk(): void {
    const sequence = this.sequence!;
    this.inFlight = true;
    this.written++;
    this.sink.write(sequence.chunks.nextChunk(), (error) => {
      this.inFlight = false;
      if (this.stopped || this.sequence !== sequence) return;
      if (error) {
        this.stop();
        return;
      }
      if (!sequence.chunks.finished()) {
        this.writeChunk();
        return;
      }
      this.sequence = undefined;
      sequence.ticket?.release();
      if (this.pending) {
        this.pending = false;
        this.changed();
      }
    });
  }
}
