/**
 * Protobuf's wire format, the few primitives Weft's hand-written messages need (Istio's certificate
 * API, discovery v2, OTLP traces): a reader that checks every length and wire type and throws a plain message on
 * malformed input, and a writer that nests messages in place. Unknown fields are skipped by
 * the callers, as protobuf requires. No schema, no reflection: each message's codec is written next
 * to its type (a schema parsed at load held about 2 MiB in every agent, docs/memory.md).
 */

export const enum WireType { Varint = 0, Fixed64 = 1, LengthDelimited = 2, Fixed32 = 5 }

const utf8 = new TextDecoder('utf-8', { fatal: true });
/** Node's Buffer method, on any Uint8Array: bytes to a string, one character per byte. */
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice(this: Uint8Array, start: number, end: number): string }).latin1Slice;

/**
 * Reads one message, and the messages nested in it through enter()/leave() without a reader or a
 * copy per nested message (a 10,000-pod full state has some 100,000 of them).
 */
export class Reader {
  private pos = 0;
  /** where the message being read ends (a nested one's end between enter() and leave()) */
  private end: number;

  constructor(private readonly buf: Uint8Array) {
    this.end = buf.length;
  }

  done(): boolean {
    return this.pos >= this.end;
  }

  varint(): bigint {
    let value = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (this.pos >= this.end) throw new Error('truncated varint');
      const byte = this.buf[this.pos++]!;
      value |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return BigInt.asUintN(64, value);
    }
    throw new Error('varint longer than 10 bytes');
  }

  /** A varint as a number: exact below 2^53 (lengths, tags, uint32, versions); larger values are refused. */
  number(what: string): number {
    const buf = this.buf;
    let pos = this.pos;
    // One byte (most tags and short lengths) without the loop.
    if (pos < this.end && buf[pos]! < 0x80) {
      this.pos = pos + 1;
      return buf[pos]!;
    }
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= this.end) throw new Error('truncated varint');
      const byte = buf[pos++]!;
      value += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) {
        this.pos = pos;
        if (value > Number.MAX_SAFE_INTEGER) throw new Error(`${what} is past 2^53`);
        return value;
      }
      scale *= 128;
    }
    throw new Error('varint longer than 10 bytes');
  }

  bool(): boolean {
    return this.varint() !== 0n;
  }

  private length(): number {
    const n = this.number('a length');
    if (n > this.end - this.pos) throw new Error('field runs past the end of the message');
    return n;
  }

  take(length: number): Uint8Array {
    if (length < 0 || length > this.end - this.pos) throw new Error('field runs past the end of the message');
    const bytes = this.buf.subarray(this.pos, this.pos + length);
    this.pos += length;
    return bytes;
  }

  bytes(): Uint8Array {
    return this.take(this.length());
  }

  /** UTF-8, strictly: invalid bytes are an error, not replacement characters. */
  string(): string {
    const n = this.length();
    const start = this.pos;
    const end = start + n;
    this.pos = end;
    const buf = this.buf;
    let i = start;
    while (i < end && buf[i]! < 0x80) i++;
    // ASCII is UTF-8 as it is: read as Latin-1 in one native call, no decoder and no view object
    // (the names, labels and addresses most strings are; a tenth of a full state's decoding time).
    if (i === end) return latin1Slice.call(buf, start, end);
    return utf8.decode(buf.subarray(start, end));
  }

  double(): number {
    const bytes = this.take(8);
    return new DataView(bytes.buffer, bytes.byteOffset, 8).getFloat64(0, true);
  }

  /** The next field's tag: its field number × 8 + its wire type (fieldOf, wireTypeOf). */
  tag(): number {
    const tag = this.number('a tag');
    if (tag < 8 || tag >= 0x20000000 * 8) throw new Error(`invalid field number ${Math.floor(tag / 8)}`);
    return tag;
  }

  /** Enters a length-delimited field as a message of its own; returns what leave() takes. */
  enter(): number {
    const n = this.length();
    const outer = this.end;
    this.end = this.pos + n;
    return outer;
  }

  /** Leaves the message enter() entered, at its end. */
  leave(outer: number): void {
    this.pos = this.end;
    this.end = outer;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case WireType.Varint: this.varint(); return;
      case WireType.Fixed64: this.take(8); return;
      case WireType.LengthDelimited: this.bytes(); return;
      case WireType.Fixed32: this.take(4); return;
      default: throw new Error(`unsupported wire type ${wireType}`);
    }
  }
}

export function fieldOf(tag: number): number {
  return Math.floor(tag / 8);
}

export function wireTypeOf(tag: number): number {
  return tag % 8;
}

/** Throws unless a field came with the wire type its type has. */
export function expectWire(actual: number, wanted: WireType, what: string): void {
  if (actual !== wanted) throw new Error(`${what} has wire type ${actual}, expected ${wanted}`);
}

/** Sets `key` as an own data property, "__proto__" included (a map's keys are data, never a prototype). */
export function setOwn<T>(into: Record<string, T>, key: string, value: T): void {
  if (key === '__proto__') Object.defineProperty(into, key, { value, enumerable: true, writable: true, configurable: true });
  else into[key] = value;
}

// Encoding.

/**
 * Writes a message into one growing buffer: nested messages in place (fork() reserves their
 * length, join() fills it in and closes the gap), so encoding allocates nothing per field. Reset
 * by finish(), which returns a copy: one Writer serves every message of a module.
 */
export class Writer {
  private buf = Buffer.allocUnsafe(4096);
  private pos = 0;

  private ensure(n: number): this {
    if (this.pos + n <= this.buf.length) return this;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
    return this;
  }

  /** A non-negative safe integer as a varint. */
  varint(v: number): this {
    this.ensure(10);
    const buf = this.buf;
    while (v > 0x7f) {
      buf[this.pos++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    buf[this.pos++] = v;
    return this;
  }

  tag(field: number, wireType: WireType): this {
    return this.varint(field * 8 + wireType);
  }

  /** A uint64 field: any non-negative integer a number holds exactly (past 2^53 too: a reader may refuse it, the wire carries it). */
  uint(field: number, v: number): this {
    this.tag(field, WireType.Varint);
    if (Number.isSafeInteger(v) && v >= 0) return this.varint(v);
    if (!Number.isInteger(v) || v < 0 || v >= 2 ** 64) throw new Error(`field ${field}: ${v} is not a uint64`);
    return this.bigVarint(BigInt(v));
  }

  /** An int64 field: negative values as their 64-bit two's complement (ten bytes), as protobuf encodes them. */
  int(field: number, v: number): this {
    if (v >= 0) return this.uint(field, v);
    if (!Number.isInteger(v) || v < -(2 ** 63)) throw new Error(`field ${field}: ${v} is not an int64`);
    return this.tag(field, WireType.Varint).bigVarint(BigInt.asUintN(64, BigInt(v)));
  }

  private bigVarint(v: bigint): this {
    this.ensure(10);
    while (v >= 0x80n) {
      this.buf[this.pos++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.pos++] = Number(v);
    return this;
  }

  bool(field: number, v: boolean): this {
    return this.tag(field, WireType.Varint).varint(v ? 1 : 0);
  }

  string(field: number, s: string): this {
    this.tag(field, WireType.LengthDelimited);
    const n = s.length;
    if (n < 128) {
      // Short ASCII (names, labels, addresses) copied in JS: Buffer#write is a native call each.
      this.ensure(n + 1);
      const buf = this.buf;
      const at = this.pos + 1;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c > 0x7f) break;
        buf[at + i] = c;
      }
      if (i === n) {
        buf[this.pos] = n;
        this.pos = at + n;
        return this;
      }
    }
    const bytes = Buffer.byteLength(s, 'utf8');
    this.varint(bytes);
    this.ensure(bytes);
    this.pos += this.buf.write(s, this.pos, 'utf8');
    return this;
  }

  bytes(field: number, b: Uint8Array): this {
    this.tag(field, WireType.LengthDelimited).varint(b.length);
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  /** Hex text as its bytes (trace and span ids). */
  hex(field: number, h: string): this {
    const n = h.length >> 1;
    this.tag(field, WireType.LengthDelimited).varint(n);
    this.ensure(n);
    this.pos += this.buf.write(h, this.pos, n, 'hex');
    return this;
  }

  fixed64(field: number, v: bigint): this {
    this.tag(field, WireType.Fixed64).ensure(8);
    this.buf.writeBigUInt64LE(v, this.pos);
    this.pos += 8;
    return this;
  }

  fixed32(field: number, v: number): this {
    this.tag(field, WireType.Fixed32).ensure(4);
    this.buf.writeUInt32LE(v >>> 0, this.pos);
    this.pos += 4;
    return this;
  }

  double(field: number, v: number): this {
    this.tag(field, WireType.Fixed64).ensure(8);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
    return this;
  }

  /** A nested message in field `field`, written by `body` in place (fork and join around it). */
  message(field: number, body: (w: this) => void): this {
    const at = this.fork(field);
    body(this);
    return this.join(at);
  }

  /** Starts a nested message in field `field`; returns what join() takes once it is written. */
  fork(field: number): number {
    this.tag(field, WireType.LengthDelimited);
    this.ensure(5);
    const at = this.pos;
    this.pos += 5;
    return at;
  }

  /** Ends the nested message fork() started: its length goes before it. */
  join(at: number): this {
    const length = this.pos - at - 5;
    let size = 1;
    for (let v = length; v > 0x7f; v = Math.floor(v / 128)) size++;
    const end = this.pos;
    this.pos = at;
    this.varint(length);
    if (size < 5) this.buf.copyWithin(at + size, at + 5, end);
    this.pos = end - (5 - size);
    return this;
  }

  /** Drops whatever was written (a message whose encoding threw half way is not the next one's start). */
  reset(): this {
    this.pos = 0;
    return this;
  }

  finish(): Buffer {
    const out = Buffer.from(this.buf.subarray(0, this.pos));
    this.pos = 0;
    return out;
  }
}
