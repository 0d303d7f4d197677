import { performance } from 'node:perf_hooks';
import type { ExchangeLog, RequestInfo, ServeHttpOptions, Verdict } from './types';

/** The body a refusal the proxy makes on its own (not a policy deny) carries. */
export function refusalVerdict(status: number, reason: string): Verdict {
  return { allow: false, status, body: reason };
}

/**
 * Collects one request's facts as it goes and reports them once. Errors from the caller's
 * onExchange are swallowed: telemetry must not break the data path.
 */
export class Exchange {
  private readonly started = performance.now();
  status = 0;
  requestBytes = 0;
  responseBytes = 0;
  verdict: Verdict = { allow: false, status: 0, body: 'not decided' };
  error: string | undefined;
  grpcStatus: string | undefined;
  private reported = false;

  constructor(private readonly info: RequestInfo, private readonly onExchange: ServeHttpOptions['onExchange']) {}

  fail(e: unknown): void {
    this.error ??= e instanceof Error ? e.message : String(e);
  }

  report(): void {
    if (this.reported) return;
    this.reported = true;
    if (!this.onExchange) return;
    const log: ExchangeLog = {
      request: this.info,
      method: this.info.method, path: this.info.path, host: this.info.host, protocol: this.info.protocol,
      ...(this.info.originalPath !== undefined ? { originalPath: this.info.originalPath } : {}),
      status: this.status, requestBytes: this.requestBytes, responseBytes: this.responseBytes,
      durationMs: performance.now() - this.started, verdict: this.verdict,
      ...(this.error !== undefined ? { error: this.error } : {}),
      ...(this.grpcStatus !== undefined ? { grpcStatus: this.grpcStatus } : {}),
    };
    try { this.onExchange(log); } catch { /* telemetry must not break the data path */ }
  }
}

/** Runs the caller's decision; one that throws denies with 500 (fail closed) and says why. */
export function decideSafely(decide: ServeHttpOptions['decide'], info: RequestInfo): { verdict: Verdict; error?: string } {
  try {
    const v = decide(info);
    if (v && (v.allow === true || (v.allow === false && Number.isInteger(v.status)))) return { verdict: v };
    return { verdict: refusalVerdict(500, 'authorization failed'), error: `decide() returned an invalid verdict: ${JSON.stringify(v)}` };
  } catch (e) {
    return { verdict: refusalVerdict(500, 'authorization failed'), error: `decide() threw: ${e instanceof Error ? e.message : String(e)}` };
  }
}
