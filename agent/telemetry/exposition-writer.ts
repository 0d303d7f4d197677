/**
 * Writes exposition text straight into Buffers, in chunks (a scrape with 1,000 pod pairs is ~118
 * MiB: building it as one JavaScript string and encoding it again for the socket cost more than the
 * writing itself). A label set's text is encoded once, when its series is made, and copied at each
 * scrape. Full chunks go to `sink` as they fill (the /metrics response), else are kept for end().
 */

const CHUNK = 1 << 20;

export class ExpositionWriter {
  private readonly chunks: Buffer[] = [];
  private buf = Buffer.allocUnsafe(CHUNK);
  private at = 0;
  private written = 0;

  constructor(private readonly sink?: (chunk: Buffer) => void) {}

  /** Nothing written yet (a family then needs no blank line before it). */
  get empty(): boolean {
    return this.written + this.at === 0;
  }

  /** Text known to be ASCII (metric names, numbers, `le` pairs, punctuation). */
  ascii(s: string): void {
    if (this.at + s.length > this.buf.length) this.next(s.length);
    this.at += this.buf.write(s, this.at, 'latin1');
  }

  /** Any text, UTF-8 encoded. */
  text(s: string): void {
    const max = s.length * 3;
    if (this.at + max > this.buf.length) this.next(max);
    this.at += this.buf.write(s, this.at, 'utf8');
  }

  /** Bytes encoded beforehand (a series' label pairs). */
  bytes(b: Uint8Array): void {
    if (this.at + b.length > this.buf.length) this.next(b.length);
    this.buf.set(b, this.at);
    this.at += b.length;
  }

  /** How many bytes were written so far. */
  get length(): number {
    return this.written + this.at;
  }

  /** The chunks written and not given to the sink, in order (the last one included); the writer is spent. */
  end(): Buffer[] {
    if (this.at > 0) this.emit(this.buf.subarray(0, this.at));
    this.written += this.at;
    this.at = 0;
    this.buf = Buffer.alloc(0);
    return this.chunks;
  }

  private emit(chunk: Buffer): void {
    if (this.sink) this.sink(chunk);
    else this.chunks.push(chunk);
  }

  private next(need: number): void {
    if (this.at > 0) this.emit(this.buf.subarray(0, this.at));
    this.written += this.at;
    this.buf = Buffer.allocUnsafe(Math.max(CHUNK, need));
    this.at = 0;
  }
}
