import pino from 'pino';
import { flattened, jsonString, membersOf } from './json-text';

/**
 * Two streams: operational logs go to stderr, access logs (one JSON line per connection or
 * request, DESIGN.md field names) go to stdout so they can be collected on their own.
 */
export type Logger = pino.Logger;

export function operationalLogger(component: string, level: string = process.env.WEFT_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { component } }, pino.destination({ fd: 2, sync: true }));
}

/**
 * An access log: one JSON line per connection or request, the same lines pino wrote
 * (`{"level":30,"time":<ms>,...,"msg":"..."}`, so pino's tools still read them), written without
 * pino and without an object per line. A call site passes the line's members as JSON text
 * (core/json-text.ts; proxy/access-log.ts builds them): a connection's ends are serialized once
 * and each request line appends its own few fields to them. At one line per HTTP request, pino's
 * way (an object of ~10 fields per line, walked and serialized after the child's bindings) cost
 * more proxy CPU than the rest of the request's telemetry (docs/metrics.md, "Access log cost").
 */
export class AccessLog {
  /** @internal the gate and destination shared with every child */
  constructor(readonly sink: AccessSink, private readonly prefix = '') {}

  /** Writes one line: `{"level":30,"time":<now>` + the prefix + `members` + `,"msg":<msg>}`. */
  write(members: string, msg: string): void {
    this.sink.out.write(`{"level":30,"time":${Date.now()}${this.prefix}${members},"msg":${jsonString(msg)}}\n`);
  }

  /** Writes one line from an object's fields (undefined skipped): for rare lines whose fields vary. */
  info(fields: Record<string, unknown>, msg: string): void {
    this.write(membersOf(fields), msg);
  }

  /** A log whose lines start with these members (written once here, not per line), sharing gate and destination. */
  child(bindings: Record<string, unknown> | string): AccessLog {
    return new AccessLog(this.sink, flattened(this.prefix + (typeof bindings === 'string' ? bindings : membersOf(bindings))));
  }

  /** Writes what is pending now. */
  flush(): void {
    this.sink.out.flushSync();
  }
}

/** What an access log and its children share. */
export interface AccessSink {
  gate: AccessLogGate | undefined;
  readonly out: BatchedDestination;
}

export function accessLogger(fd = 1, batch: AccessLogBatch = {}, gate?: AccessLogGate): AccessLog {
  return new AccessLog({ gate, out: batchedDestination(fd, batch) });
}

/** What a call site knows about a line it is about to write: enough to tell a success from a failure or a denial. */
export interface AccessLineFacts {
  decision: 'allow' | 'deny';
  /** an HTTP request's status; 0 when no response was sent */
  status?: number;
  /** Istio's response flags, '-' for none */
  flags?: string;
  error?: string;
}

/** Says whether a line is written (telemetry/access-log-policy.ts builds it from ProxyConfig spec.accessLog). */
export type AccessLogGate = (facts: AccessLineFacts) => boolean;

/**
 * Installs (or with undefined removes) the gate of an access log; it applies to its children
 * (the logs of live connections) too, as they share it.
 */
export function gateAccessLog(log: AccessLog, gate: AccessLogGate | undefined): void {
  log.sink.gate = gate;
}

/**
 * Asked by every access-log call site before it builds its line: true when the line is wanted (no
 * gate: always). A dropped line costs this call and the facts object, not the line's fields,
 * their serialization or the write.
 */
export function wantsLine(log: AccessLog, facts: AccessLineFacts): boolean {
  const gate = log.sink.gate;
  return gate === undefined || gate(facts);
}

/** How long and how much the access log keeps before writing. */
export interface AccessLogBatch {
  /** a line waits at most this long (default 25 ms) */
  maxDelayMs?: number;
  /** pending lines are written at once when they reach this many characters (default 64 KiB) */
  maxBytes?: number;
}

const flushOnExit = new Set<() => void>();
let exitHooked = false;

/**
 * Pending lines are written when the process exits (process.exit, the end of the loop, an uncaught
 * exception: all emit 'exit') and on SIGTERM/SIGINT; when nothing else listens for the signal it is
 * raised again, so the process still ends by it as it would have.
 */
function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  const flushAll = (): void => { for (const f of flushOnExit) f(); };
  process.once('exit', flushAll);
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    const onSignal = (): void => {
      flushAll();
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.once(sig, onSignal);
  }
}

/** Where access-log lines are written (batchedDestination()). */
export interface BatchedDestination {
  write(line: string): boolean;
  flushSync(): void;
  /** what pino's logger.flush() called */
  flush(cb?: (e?: Error) => void): void;
}

/**
 * Where access-log lines go: lines are gathered and written together, synchronously, when the first
 * of them has waited maxDelayMs or when they reach maxBytes, and on exit or SIGTERM/SIGINT. At a
 * few thousand requests per second that is one write per ~100 lines instead of one per turn of the
 * event loop (service-route: the per-turn `writeSync` was 7% of the source proxy's busy time and
 * 11% of the destination's).
 *
 * It replaces an asynchronous pino destination, which hands each write to libuv's thread pool (a
 * thread woken, the write, the loop woken): with one line per HTTP request that cost the
 * destination proxy more CPU than parsing the request did (HTTP/1.1 benchmark: 133-171 us per
 * request with the log, 91-103 without). A full pipe blocks the write as pino's own synchronous
 * destination does (retrying EAGAIN), so the log cannot grow in memory behind a slow reader.
 * What a SIGKILL or a crash of the runtime itself interrupts (at most maxDelayMs of lines) is lost.
 */
export function batchedDestination(fd: number, batch: AccessLogBatch = {}): BatchedDestination {
  const maxDelayMs = batch.maxDelayMs ?? 25;
  const maxBytes = batch.maxBytes ?? 64 * 1024;
  if (!(maxDelayMs >= 0) || !(maxBytes > 0)) throw new TypeError(`access log batch: maxDelayMs must be >= 0 and maxBytes > 0, got ${maxDelayMs} and ${maxBytes}`);
  const out = pino.destination({ fd, sync: true });
  let pending: string[] = [];
  let size = 0;
  let timer: NodeJS.Timeout | undefined;
  const flushSync = (): void => {
    if (timer !== undefined) { clearTimeout(timer); timer = undefined; }
    if (pending.length === 0) return;
    const lines = pending.length === 1 ? pending[0]! : pending.join('');
    pending = [];
    size = 0;
    out.write(lines);
  };
  flushOnExit.add(flushSync);
  hookExit();
  return {
    write(line: string): boolean {
      pending.push(line);
      size += line.length;
      if (size >= maxBytes) flushSync();
      else if (timer === undefined) {
        timer = setTimeout(flushSync, maxDelayMs);
        timer.unref();
      }
      return true;
    },
    flushSync,
    /** what pino's logger.flush() calls */
    flush(cb?: (e?: Error) => void): void {
      flushSync();
      cb?.();
    },
  };
}
