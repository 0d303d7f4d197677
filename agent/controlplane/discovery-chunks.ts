import { err, ok, type Result } from '../core/result';
import { encodeDeltaResponseFramed, type DeltaResponse, type ResourceName } from './discovery-proto';
import { resourceId } from './discovery-resources';

/**
 * A v2 message too large for one response goes as a sequence of chunks (issue 10): every chunk
 * carries the same system_version, control_plane_epoch, full_state and base_version; the removed
 * names come first, then the resources; `more` is set on all but the last. The agent applies the
 * sequence once, when the last chunk has arrived, so a stream that breaks mid-sequence leaves its
 * state (and its resume point) as they were.
 *
 * 512 KiB of resources per chunk: a stream holds at most one chunk's bytes (one in flight), so 100
 * streams sending full states hold ~50 MiB instead of 100 whole states (4.7 MiB each at 10,000
 * pods); a chunk is still large against the per-message cost (a 10,000-pod state is 10 chunks), and
 * it stays well below grpc-js' default 4 MiB receive limit that the agent keeps. A resource larger
 * than a chunk goes alone in its own chunk: the largest one the agent accepts is 4 MiB less the
 * header (about 100 bytes), above the 1.5 MiB any Kubernetes object can be (etcd's request limit).
 */
export const DEFAULT_CHUNK_BYTES = 512 * 1024;

/** Header fields every chunk of a sequence repeats. */
export type SequenceHeader = Pick<DeltaResponse, 'systemVersion' | 'epoch' | 'fullState' | 'baseVersion'>;

/** Bytes a removed name takes in a response, near enough: the message's tag and length, and its two strings with theirs. */
function nameBytes(r: ResourceName): number {
  return r.kind.length + Buffer.byteLength(r.key) + 8;
}

/**
 * The sender's side: one message as its chunks, each encoded only when asked for (nextChunk), from
 * the resources' cached encodings produced lazily by `entries`. Holds the header, the removed
 * names, the iterator and one entry looked ahead, never an encoded chunk.
 */
export class ChunkedSequence {
  private peeked: Uint8Array | undefined;
  private removedAt = 0;
  private done = false;
  private chunks = 0;

  constructor(
    readonly header: SequenceHeader,
    private readonly removed: readonly ResourceName[],
    private readonly entries: Iterator<Uint8Array>,
    private readonly chunkBytes: number = DEFAULT_CHUNK_BYTES,
  ) {
    if (!(chunkBytes > 0)) throw new Error(`discovery: chunk size ${chunkBytes} must be a positive number of bytes`);
    this.peeked = this.advance();
  }

  /** Whether every chunk has been produced. */
  finished(): boolean {
    return this.done;
  }

  /** Chunks produced so far. */
  chunksProduced(): number {
    return this.chunks;
  }

  /** The next chunk, encoded: up to chunkBytes of names and resources (one larger resource alone); `more` while anything is left. */
  nextChunk(): Buffer {
    if (this.done) throw new Error('discovery: every chunk of this sequence was already produced');
    let size = 0;
    const removed: ResourceName[] = [];
    const entries: Uint8Array[] = [];
    while (this.removedAt < this.removed.length) {
      const r = this.removed[this.removedAt]!;
      const n = nameBytes(r);
      if (size > 0 && size + n > this.chunkBytes) break;
      removed.push(r);
      size += n;
      this.removedAt++;
    }
    if (this.removedAt === this.removed.length) {
      while (this.peeked !== undefined) {
        if (size > 0 && size + this.peeked.length > this.chunkBytes) break;
        entries.push(this.peeked);
        size += this.peeked.length;
        this.peeked = this.advance();
      }
    }
    const more = this.removedAt < this.removed.length || this.peeked !== undefined;
    this.chunks++;
    if (!more) this.done = true;
    return encodeDeltaResponseFramed(more ? { ...this.header, removed, more: true } : { ...this.header, removed }, entries);
  }

  private advance(): Uint8Array | undefined {
    const n = this.entries.next();
    return n.done === true ? undefined : n.value;
  }
}

/**
 * The agent's side, one per stream: collects the chunks of a sequence and gives the whole message
 * once its last chunk has arrived. A chunk that does not continue the sequence in progress (another
 * version, epoch, kind of message or base) or lists a resource an earlier chunk listed is refused,
 * and the partial sequence dropped: nothing of it was applied.
 */
export class ChunkAssembler {
  private pending: DeltaResponse | undefined;
  private ids = new Set<string>();

  /** The whole message when `m` completes one; undefined while more chunks follow; or why `m` is refused. */
  add(m: DeltaResponse): Result<DeltaResponse | undefined, string> {
    const p = this.pending;
    if (p === undefined) {
      if (m.more !== true) return ok(m);
      this.pending = { systemVersion: m.systemVersion, epoch: m.epoch, fullState: m.fullState, baseVersion: m.baseVersion, resources: [...m.resources], removed: [...m.removed] };
      this.ids = new Set([...m.resources, ...m.removed].map((r) => resourceId(r.kind, r.key)));
      return ok(undefined);
    }
    if (m.epoch !== p.epoch || m.systemVersion !== p.systemVersion || m.fullState !== p.fullState || m.baseVersion !== p.baseVersion) {
      this.drop();
      return err(`a chunk of ${describe(m)} in the middle of the chunks of ${describe(p)}`);
    }
    for (const r of [...m.resources, ...m.removed]) {
      const id = resourceId(r.kind, r.key);
      if (this.ids.has(id)) {
        this.drop();
        return err(`${id} in two chunks of ${describe(p)}`);
      }
      this.ids.add(id);
    }
    for (const r of m.resources) p.resources.push(r);
    for (const r of m.removed) p.removed.push(r);
    if (m.more === true) return ok(undefined);
    this.drop();
    return ok(p);
  }

  /** Whether a sequence has begun and not ended. */
  inProgress(): boolean {
    return this.pending !== undefined;
  }

  private drop(): void {
    this.pending = undefined;
    this.ids = new Set();
  }
}

function describe(m: SequenceHeader): string {
  return `${m.fullState ? 'the full state' : `the delta from ${m.baseVersion}`} at version ${m.systemVersion} of epoch ${m.epoch}`;
}
