import pino from 'pino';

/**
 * Two streams: operational logs go to stderr, access logs (one JSON line per connection or
 * request, DESIGN.md field names) go to stdout so they can be collected on their own.
 */
export type Logger = pino.Logger;

export function operationalLogger(component: string, level: string = process.env.WEFT_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { component } }, pino.destination({ fd: 2, sync: true }));
}

export function accessLogger(fd = 1): Logger {
  return pino({ base: undefined, messageKey: 'msg' }, tickBatchedDestination(fd));
}

/**
 * Where access-log lines go: the lines written during one turn of the event loop are joined and
 * written once, synchronously, when the turn ends (setImmediate); what is pending is written on
 * exit too. A line is never held longer than the turn that logged it.
 *
 * It replaces an asynchronous pino destination, which hands each write to libuv's thread pool (a
 * thread woken, the write, the loop woken): with one line per HTTP request that cost the
 * destination proxy more CPU than parsing the request did (HTTP/1.1 benchmark: 133-171 us per
 * request with the log, 91-103 without). A full pipe blocks the write as pino's own synchronous
 * destination does (retrying EAGAIN), so the log cannot grow in memory behind a slow reader.
 */
export function tickBatchedDestination(fd: number): { write(line: string): boolean; flushSync(): void } {
  const out = pino.destination({ fd, sync: true });
  let pending: string[] = [];
  let scheduled = false;
  const flushSync = (): void => {
    scheduled = false;
    if (pending.length === 0) return;
    const lines = pending.length === 1 ? pending[0]! : pending.join('');
    pending = [];
    out.write(lines);
  };
  process.once('exit', flushSync);
  return {
    write(line: string): boolean {
      pending.push(line);
      if (!scheduled) {
        scheduled = true;
        setImmediate(flushSync);
      }
      return true;
    },
    flushSync,
  };
}
