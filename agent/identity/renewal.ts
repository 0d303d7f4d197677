/** When to renew a workload certificate and how long to wait after a failed attempt: pure, no timers. */

/** Renewal lands between 40 % and 60 % of the lifetime, so agents do not all renew at once. */
const RENEW_FRACTION_MIN = 0.4;
const RENEW_FRACTION_SPREAD = 0.2;
/** Renew at least this long before expiry, so retries have time to succeed; never earlier than half life. */
export const SAFETY_MARGIN_MS = 5 * 60_000;

export const BACKOFF_BASE_MS = 250;
export const BACKOFF_CAP_MS = 30_000;

/**
 * When to renew a certificate received at `now`. Its lifetime counts from `now` when the CA
 * backdated `notBefore` (it does, by a minute, for clock skew): a 6 s certificate is renewed after
 * about 3 s, not immediately. `jitter` is a uniform sample in [0, 1).
 */
export function renewAt(notBefore: Date, notAfter: Date, now: Date, jitter: number = Math.random()): Date {
  const start = Math.max(notBefore.getTime(), now.getTime());
  const lifetime = notAfter.getTime() - start;
  if (lifetime <= 0) return new Date(now.getTime());
  const target = start + lifetime * (RENEW_FRACTION_MIN + RENEW_FRACTION_SPREAD * jitter);
  const latest = notAfter.getTime() - Math.min(SAFETY_MARGIN_MS, lifetime / 2);
  return new Date(Math.min(target, latest));
}

/**
 * Milliseconds to wait before retry number `attempt` (0 for the first retry): 250 ms doubling up
 * to 30 s, each delay drawn from its upper half by `jitter` in [0, 1). While a certificate is still
 * valid the wait is at most half the time it has left, so attempts get denser, not sparser, as
 * its expiry nears.
 */
export function backoff(attempt: number, { now, notAfter, jitter = Math.random() }: { now?: Date; notAfter?: Date; jitter?: number } = {}): number {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 30));
  const delay = ceiling * (0.5 + jitter / 2);
  const left = now && notAfter ? notAfter.getTime() - now.getTime() : 0;
  return left > 0 ? Math.min(delay, left / 2) : delay;
}
