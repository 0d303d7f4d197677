/**
 * The agent's gRPC client: unary and server-streaming calls over node:http2, which the agent loads
 * anyway for HBONE. The agent makes two kinds of call to the control plane (a certificate request,
 * a discovery watch), each with a codec of its own, so it needs gRPC's framing and status rules and
 * nothing else of @grpc/grpc-js. Loading grpc-js cost each agent 1.7-3.2 MiB of RSS at start
 * (docs/memory.md), on an idle budget of 64. The control plane keeps grpc-js as its server, and the
 * tests call this client against it.
 *
 * What it follows (grpc/doc/PROTOCOL-HTTP2.md): requests are POSTs with `content-type:
 * application/grpc`, `te: trailers` and `grpc-timeout`; messages are length-prefixed, uncompressed
 * (no `grpc-accept-encoding` is sent, so a compressed one is refused); the status comes from the
 * trailers (or a trailers-only response); without one, from the HTTP status, the stream's reset code
 * or the connection's failure, as the spec maps them. One HTTP/2 connection per channel, made on the
 * first call and again on the first call after it closed, given up when not up within 20 s; while a
 * call is open it is pinged, and a connection whose ping goes unanswered is closed, failing its calls
 * UNAVAILABLE.
 */
import * as http2 from 'node:http2';
import type { PeerCertificate } from 'node:tls';
import { GrpcStatus, statusName } from './grpc-status';

/** A call that ended with a status other than OK. */
export class GrpcError extends Error {
  constructor(readonly code: number, readonly details: string) {
    super(`${statusName(code)}: ${details}`);
    this.name = 'GrpcError';
  }
}

/** Where a channel dials and how it verifies the server (control-plane-tls.ts builds these). */
export interface GrpcTarget {
  host: string;
  port: number;
  /** The only roots the server's certificate may chain to. */
  ca: string;
  /** TLS server name (SNI); never an IP address. */
  servername: string;
  checkServerIdentity?: (host: string, cert: PeerCertificate) => Error | undefined;
}

export interface ChannelOptions {
  /** Ping the connection this often while a call is open; 0: never. */
  keepaliveTimeMs?: number;
  /** Close the connection when a ping is not answered within this long. */
  keepaliveTimeoutMs?: number;
  /** The largest message accepted; a larger one fails the call RESOURCE_EXHAUSTED. */
  maxReceiveBytes?: number;
  /**
   * A connection not up (TCP and TLS) within this long is given up, failing its calls UNAVAILABLE.
   * Without it a peer that drops the SYNs (a control plane gone from behind its address) holds a
   * watch for the kernel's SYN retries, about two minutes, before it tries again. grpc-js' 20 s.
   */
  connectTimeoutMs?: number;
}

/** What a server-streaming call reports: messages in order, then exactly one of end() or error(). */
export interface StreamListener {
  message(message: Buffer): void;
  /** The server ended the stream with OK. */
  end(): void;
  error(error: GrpcError): void;
}

export interface Call {
  /** Ends the call (RST_STREAM CANCEL); nothing more is reported for it. */
  cancel(): void;
}

const USER_AGENT = 'weft-agent (node:http2)';
const DEFAULT_MAX_RECEIVE = 4 * 1024 * 1024;
const DEFAULT_CONNECT_TIMEOUT_MS = 20_000;
const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM, NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_INADEQUATE_SECURITY } = http2.constants;

/** gRPC's status for an HTTP status other than 200 on a response without grpc-status (the spec's table). Pure. */
export function statusOfHttp(httpStatus: number): number {
  switch (httpStatus) {
    case 400: return GrpcStatus.INTERNAL;
    case 401: return GrpcStatus.UNAUTHENTICATED;
    case 403: return GrpcStatus.PERMISSION_DENIED;
    case 404: return GrpcStatus.UNIMPLEMENTED;
    case 429: case 502: case 503: case 504: return GrpcStatus.UNAVAILABLE;
    default: return GrpcStatus.UNKNOWN;
  }
}

/** gRPC's status for a stream the server reset before sending a status (the spec's table). Pure. */
export function statusOfReset(code: number): number {
  switch (code) {
    case NGHTTP2_REFUSED_STREAM: return GrpcStatus.UNAVAILABLE;
    case NGHTTP2_CANCEL: return GrpcStatus.CANCELLED;
    case NGHTTP2_ENHANCE_YOUR_CALM: return GrpcStatus.RESOURCE_EXHAUSTED;
    case NGHTTP2_INADEQUATE_SECURITY: return GrpcStatus.PERMISSION_DENIED;
    default: return GrpcStatus.INTERNAL;
  }
}

/** grpc-message is percent-encoded; a malformed one is shown as sent. */
function decodeMessage(value: string | string[] | undefined): string {
  const text = Array.isArray(value) ? value.join(',') : value ?? '';
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** One message framed for the wire: no compression, 4-byte big-endian length. */
export function frame(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

/** Cuts a response body into its length-prefixed messages, whatever the chunks it arrives in. */
export class MessageReader {
  private chunks: Buffer[] = [];
  private size = 0;
  /** The length of the message whose prefix has been read, until the message is whole. */
  private need: number | undefined;

  constructor(private readonly maxBytes: number) {}

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.size += chunk.length;
  }

  /** The next whole message; undefined when more bytes are needed; a GrpcError for a message that cannot be accepted. */
  next(): Buffer | GrpcError | undefined {
    if (this.need === undefined) {
      if (this.size < 5) return undefined;
      const prefix = this.take(5);
      const length = prefix.readUInt32BE(1);
      if (prefix[0] !== 0) return new GrpcError(GrpcStatus.INTERNAL, `the server sent a compressed message (flag ${prefix[0]}), and no compression was offered`);
      if (length > this.maxBytes) return new GrpcError(GrpcStatus.RESOURCE_EXHAUSTED, `the server sent a message of ${length} bytes, more than the ${this.maxBytes} accepted`);
      this.need = length;
    }
    if (this.size < this.need) return undefined;
    const message = this.take(this.need);
    this.need = undefined;
    return message;
  }

  /** Bytes of an unfinished message are held. */
  pending(): boolean {
    return this.size > 0 || this.need !== undefined;
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const all = Buffer.concat(this.chunks, this.size);
      out = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.size -= n;
    return out;
  }
}

interface Connection {
  session: http2.ClientHttp2Session;
  /** The connection's own failure (TLS, refused, reset), for calls that fail with it. */
  error?: Error;
  keepalive?: NodeJS.Timeout;
}

/** The reason a failed stream's connection gives: a pending stream's cancel carries it as its cause. */
function failureText(stream: Error | undefined, connection: Error | undefined): string {
  const cause = (stream as (Error & { cause?: unknown }) | undefined)?.cause;
  if (cause instanceof Error) return cause.message;
  return (connection ?? stream)?.message ?? 'the connection closed';
}

export class GrpcChannel {
  private connection: Connection | undefined;
  private open = 0;
  private closed = false;

  constructor(private readonly target: GrpcTarget, private readonly options: ChannelOptions = {}) {}

  /** One request, one response message. */
  unary(path: string, request: Buffer, metadata: Record<string, string>, deadlineMs: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      let response: Buffer | undefined;
      let extra = false;
      this.start(path, request, metadata, deadlineMs, {
        message: (m) => { if (response === undefined) response = m; else extra = true; },
        finish: (error) => {
          if (error) reject(error);
          else if (response === undefined) reject(new GrpcError(GrpcStatus.INTERNAL, `${path} ended with OK and no response message`));
          else if (extra) reject(new GrpcError(GrpcStatus.INTERNAL, `${path} sent more than one response message`));
          else resolve(response);
        },
      });
    });
  }

  /** One request, a stream of response messages. */
  serverStream(path: string, request: Buffer, metadata: Record<string, string>, listener: StreamListener): Call {
    return this.start(path, request, metadata, undefined, {
      message: (m) => listener.message(m),
      finish: (error) => (error ? listener.error(error) : listener.end()),
    });
  }

  /** Closes the connection once its calls are done; a later call fails UNAVAILABLE. */
  close(): void {
    this.closed = true;
    const c = this.connection;
    this.connection = undefined;
    if (c === undefined) return;
    clearInterval(c.keepalive);
    if (!c.session.destroyed) c.session.close();
  }

  private connect(): Connection {
    const live = this.connection;
    if (live !== undefined && !live.session.closed && !live.session.destroyed) return live;
    const { host, port, ca, servername, checkServerIdentity } = this.target;
    const authority = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
    const session = http2.connect(authority, { ca, servername, ...(checkServerIdentity ? { checkServerIdentity } : {}), settings: { enablePush: false } });
    const c: Connection = { session };
    const connectMs = this.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const connecting = setTimeout(() => {
      if (session.connecting) session.destroy(new Error(`no connection to ${authority} within ${connectMs} ms`));
    }, connectMs);
    connecting.unref();
    session.once('connect', () => clearTimeout(connecting));
    session.on('error', (e) => { c.error = e; });
    session.on('close', () => {
      clearTimeout(connecting);
      clearInterval(c.keepalive);
      if (this.connection === c) this.connection = undefined;
    });
    const every = this.options.keepaliveTimeMs ?? 0;
    if (every > 0) {
      const timeout = this.options.keepaliveTimeoutMs ?? 20_000;
      c.keepalive = setInterval(() => this.ping(c, timeout), every);
      c.keepalive.unref();
    }
    this.connection = c;
    return c;
  }

  private ping(c: Connection, timeoutMs: number): void {
    const { session } = c;
    if (this.open === 0 || session.connecting || session.closed || session.destroyed) return;
    const timer = setTimeout(() => session.destroy(new Error(`the server did not answer a keepalive ping within ${timeoutMs} ms`)), timeoutMs);
    timer.unref();
    try {
      // Answered, or cancelled because the session closed: either way nothing is left to time out.
      if (!session.ping(() => clearTimeout(timer))) clearTimeout(timer); // too many pings unanswered already: the earlier one's timer runs
    } catch {
      clearTimeout(timer); // the session closed between the check and the ping
    }
  }

  private start(path: string, request: Buffer, metadata: Record<string, string>, deadlineMs: number | undefined,
    sink: { message(m: Buffer): void; finish(error?: GrpcError): void }): Call {
    if (this.closed) {
      process.nextTick(() => sink.finish(new GrpcError(GrpcStatus.UNAVAILABLE, 'the channel was closed')));
      return { cancel() {} };
    }
    const headers: http2.OutgoingHttpHeaders = {
      ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', 'user-agent': USER_AGENT, ...metadata,
    };
    if (deadlineMs !== undefined) headers['grpc-timeout'] = `${Math.max(1, Math.ceil(deadlineMs))}m`;
    let c: Connection;
    let stream: http2.ClientHttp2Stream;
    try {
      // Either may throw rather than fail the call: an address that is not a URL's host, a
      // session closed in between.
      c = this.connect();
      stream = c.session.request(headers);
    } catch (e) {
      process.nextTick(() => sink.finish(new GrpcError(GrpcStatus.UNAVAILABLE, (e as Error).message)));
      return { cancel() {} };
    }
    this.open++;
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const settle = (): boolean => {
      if (done) return false;
      done = true;
      this.open--;
      clearTimeout(timer);
      return true;
    };
    const fail = (error: GrpcError): void => {
      if (!settle()) return;
      stream.close(NGHTTP2_CANCEL);
      sink.finish(error);
    };
    if (deadlineMs !== undefined) timer = setTimeout(() => fail(new GrpcError(GrpcStatus.DEADLINE_EXCEEDED, `no answer within the deadline of ${deadlineMs} ms`)), deadlineMs);

    let httpStatus: number | undefined;
    let grpcStatus: number | undefined;
    let grpcMessage = '';
    let streamError: Error | undefined;
    const reader = new MessageReader(this.options.maxReceiveBytes ?? DEFAULT_MAX_RECEIVE);
    const readStatus = (h: http2.IncomingHttpHeaders): void => {
      const value = h['grpc-status'];
      if (value === undefined) return;
      const code = Number(value);
      grpcStatus = Number.isInteger(code) && code >= 0 ? code : GrpcStatus.UNKNOWN;
      grpcMessage = decodeMessage(h['grpc-message']);
    };
    stream.on('response', (h) => {
      httpStatus = Number(h[':status']);
      readStatus(h);
    });
    stream.on('trailers', readStatus);
    stream.on('data', (chunk: Buffer) => {
      if (done) return;
      reader.push(chunk);
      for (let m = reader.next(); m !== undefined && !done; m = reader.next()) {
        if (m instanceof GrpcError) return fail(m);
        sink.message(m);
      }
    });
    stream.on('error', (e) => { streamError ??= e; });
    stream.on('close', () => {
      if (!settle()) return;
      sink.finish(this.outcome(stream, c, { httpStatus, grpcStatus, grpcMessage, streamError, unfinished: reader.pending() }));
    });
    stream.end(frame(request));
    return { cancel: () => { if (settle()) stream.close(NGHTTP2_CANCEL); } };
  }

  /** How a closed stream ended: undefined for OK. */
  private outcome(stream: http2.ClientHttp2Stream, c: Connection,
    s: { httpStatus?: number; grpcStatus?: number; grpcMessage: string; streamError?: Error; unfinished: boolean }): GrpcError | undefined {
    if (s.grpcStatus !== undefined) {
      if (s.grpcStatus !== GrpcStatus.OK) return new GrpcError(s.grpcStatus, s.grpcMessage);
      return s.unfinished ? new GrpcError(GrpcStatus.INTERNAL, 'the stream ended inside a message') : undefined;
    }
    if (s.httpStatus !== undefined && s.httpStatus !== 200) return new GrpcError(statusOfHttp(s.httpStatus), `HTTP status ${s.httpStatus} without a gRPC status`);
    const { session } = c;
    if (session.closed || session.destroyed || c.error !== undefined) return new GrpcError(GrpcStatus.UNAVAILABLE, failureText(s.streamError, c.error));
    const reset = stream.rstCode;
    if (reset !== undefined && reset !== NGHTTP2_NO_ERROR) return new GrpcError(statusOfReset(reset), `the server reset the stream (HTTP/2 error ${reset})`);
    if (s.streamError !== undefined) return new GrpcError(GrpcStatus.UNAVAILABLE, failureText(s.streamError, undefined));
    return new GrpcError(GrpcStatus.INTERNAL, 'the stream ended without a gRPC status');
  }
}
