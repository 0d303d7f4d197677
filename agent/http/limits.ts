import type { Result } from '../core/result';
import { err, ok } from '../core/result';

/**
 * What one downstream connection may cost the node proxy. HTTP/1 values go to Node's http server
 * (llhttp); the HTTP/2 ones to nghttp2 through Node's http2 options, plus two rate budgets of our
 * own (rapid reset, SETTINGS flood). docs/http.md says what Node does without them.
 */
export interface HttpLimits {
  /** Request head: HTTP/1 `maxHeaderSize` (431 beyond), HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE. */
  maxHeaderBytes: number;
  /** Header fields per request: HTTP/1 `maxHeadersCount` (later ones dropped by Node), HTTP/2 `maxHeaderListPairs` (stream refused). */
  maxHeaderPairs: number;
  /** Request body; beyond it 413 (announced length) or the request is cut (streamed). Unset: no limit. */
  maxRequestBodyBytes?: number;
  /** HTTP/1: the whole request head must arrive within this (slowloris); 408 otherwise. */
  headersTimeoutMs: number;
  /** HTTP/1: the whole request (head and body) must arrive within this; HTTP/2: per stream. 0 = none. */
  requestTimeoutMs: number;
  /** A connection with no request in flight is closed after this (HTTP/1 keep-alive, HTTP/2 session without streams). */
  idleTimeoutMs: number;
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS we advertise; streams past it are refused. */
  maxConcurrentStreams: number;
  /** nghttp2: invalid frames a session may send before it is closed (Node default 1000). */
  maxSessionInvalidFrames: number;
  /** nghttp2: streams the proxy may refuse (e.g. past maxConcurrentStreams) before the session is closed (Node default 100). */
  maxSessionRejectedStreams: number;
  /** nghttp2: entries in one SETTINGS frame (Node default 32). */
  maxSettingsEntries: number;
  /** Our own PINGs left unanswered before the session is closed (Node default 10). */
  maxOutstandingPings: number;
  /** nghttp2's memory per session in MiB (Node default 10); past it new streams are refused. */
  maxSessionMemoryMiB: number;
  /** Rapid reset (CVE-2023-44487): streams a client may reset before they complete, as a burst ... */
  resetBurst: number;
  /** ... refilled at this rate per second; past it the session gets GOAWAY ENHANCE_YOUR_CALM. */
  resetsPerSecond: number;
  /** SETTINGS flood: SETTINGS frames as a burst ... */
  settingsBurst: number;
  /** ... refilled at this rate per second; past it GOAWAY ENHANCE_YOUR_CALM. */
  settingsPerSecond: number;
  /** A denied HTTP/1 request whose remaining body is at most this is read and dropped so the connection stays usable; a larger or unannounced one closes the connection. */
  maxDenyDrainBytes: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = Object.freeze({
  // Envoy's default max_request_headers_kb is 60; Node's 16 KiB rejects headers real clients send (large cookies, JWTs).
  maxHeaderBytes: 60 * 1024,
  maxHeaderPairs: 100,
  headersTimeoutMs: 60_000,
  requestTimeoutMs: 0,
  idleTimeoutMs: 60 * 60_000,
  maxConcurrentStreams: 100,
  maxSessionInvalidFrames: 100,
  maxSessionRejectedStreams: 100,
  maxSettingsEntries: 32,
  maxOutstandingPings: 10,
  maxSessionMemoryMiB: 10,
  resetBurst: 200,
  resetsPerSecond: 100,
  settingsBurst: 50,
  settingsPerSecond: 10,
  maxDenyDrainBytes: 64 * 1024,
});

const POSITIVE: ReadonlyArray<keyof HttpLimits> = [
  'maxHeaderBytes', 'maxHeaderPairs', 'headersTimeoutMs', 'idleTimeoutMs', 'maxConcurrentStreams',
  'maxSessionInvalidFrames', 'maxSessionRejectedStreams', 'maxSettingsEntries', 'maxOutstandingPings',
  'maxSessionMemoryMiB', 'resetBurst', 'resetsPerSecond', 'settingsBurst', 'settingsPerSecond',
];

/** Checks a limits object before a server is built from it; the error names the field. */
export function checkLimits(l: HttpLimits): Result<HttpLimits, string> {
  for (const field of POSITIVE) {
    const v = l[field];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) return err(`HttpLimits.${field} must be a positive integer, got ${String(v)}`);
  }
  for (const field of ['requestTimeoutMs', 'maxDenyDrainBytes'] as const) {
    const v = l[field];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) return err(`HttpLimits.${field} must be a non-negative integer, got ${String(v)}`);
  }
  if (l.maxRequestBodyBytes !== undefined && (!Number.isInteger(l.maxRequestBodyBytes) || l.maxRequestBodyBytes < 0)) {
    return err(`HttpLimits.maxRequestBodyBytes must be a non-negative integer or unset, got ${String(l.maxRequestBodyBytes)}`);
  }
  if (l.requestTimeoutMs > 0 && l.headersTimeoutMs > l.requestTimeoutMs) {
    return err(`HttpLimits.headersTimeoutMs (${l.headersTimeoutMs}) must not exceed requestTimeoutMs (${l.requestTimeoutMs})`);
  }
  if (l.maxConcurrentStreams > 2 ** 31 - 1) return err(`HttpLimits.maxConcurrentStreams must be below 2^31, got ${l.maxConcurrentStreams}`);
  return ok(l);
}

/**
 * A token bucket: `burst` events at once, refilled at `perSecond`. Pure apart from the clock it is
 * handed, so it is tested without timers.
 */
export class RateBudget {
  private tokens: number;
  private last: number;
  constructor(private readonly burst: number, private readonly perSecond: number, now: number) {
    this.tokens = burst;
    this.last = now;
  }
  /** Spends one token; false when the budget is exhausted. */
  take(now: number): boolean {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.perSecond);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
