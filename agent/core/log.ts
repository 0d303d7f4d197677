import pino from 'pino';

/**
 * Two streams: operational logs go to stderr, access logs (one JSON line per connection or
 * request, DESIGN.md field names) go to stdout so they can be collected on their own.
 */
export type Logger = pino.Logger;

export function operationalLogger(component: string, level: string = process.env.WEFT_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { component } }, pino.destination({ fd: 2, sync: true }));
}

export function accessLogger(): Logger {
  return pino({ base: undefined, messageKey: 'msg' }, pino.destination({ fd: 1, sync: false }));
}
