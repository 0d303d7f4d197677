/**
 * The OTLP/HTTP span exporter: finished spans wait in a bounded queue and leave in batches
 * (`POST <endpoint>` with `application/x-protobuf`), one request at a time, each with a deadline.
 * Nothing waits on it: add() only pushes or, with the queue full, drops and counts. A batch the
 * collector does not take (down, slow, refusing) is dropped and counted, never retried into a
 * growing backlog; the operator is told what to check, at most once a minute.
 */
import http from 'node:http';
import https from 'node:https';
import type { Logger } from '../core/log';
import { err, ok, type Result } from '../core/result';
import { encodeExportRequest, type ExportBatch } from './otlp-encode';
import type { AttributeValue, FinishedSpan, SpanSink } from './tracing';

export interface OtlpExporterOptions {
  /** the traces URL (`http://collector:4318/v1/traces`); a URL without a path gets `/v1/traces` (OTLP's default) */
  endpoint: string;
  /** resource attributes every span shares (`k8s.node.name`, ...) */
  resource?: Array<[string, AttributeValue]>;
  /** spans held at most; more are dropped and counted (default 2048, OpenTelemetry's BatchSpanProcessor default) */
  maxQueue?: number;
  /** spans per request at most (default 512) */
  maxBatch?: number;
  /** how long a span may wait for a batch to fill (default 1000 ms) */
  flushMs?: number;
  /** deadline of one export request (default 10 s, OTLP's default) */
  timeoutMs?: number;
  log?: Logger;
}

/** Counts since start, for the operator (`/config_dump`-style views and tests). */
export interface ExporterStats {
  /** spans handed over by the collector's 2xx */
  exported: number;
  /** spans dropped because the queue was full */
  droppedQueueFull: number;
  /** spans in batches the collector did not take (error, non-2xx, timeout) */
  droppedExportFailed: number;
  /** export requests that failed */
  failedRequests: number;
  /** spans waiting now */
  queued: number;
  /** the last failure, for the operator */
  lastError?: string;
}

export const SCOPE = { name: 'weft', version: '0.1.0' } as const;

/** The traces URL of a configured endpoint, or why it cannot be one. Pure. */
export function tracesUrl(endpoint: string): Result<URL, string> {
  let url: URL;
  try { url = new URL(endpoint); } catch { return err(`"${endpoint}" is not a URL (expected e.g. http://otel-collector.observability:4318/v1/traces)`); }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return err(`"${endpoint}": OTLP/HTTP needs an http:// or https:// URL`);
  if (url.username !== '' || url.password !== '') return err(`"${endpoint}": credentials in the URL are not supported`);
  if (url.pathname === '' || url.pathname === '/') url.pathname = '/v1/traces';
  return ok(url);
}

export class OtlpExporter implements SpanSink {
  private queue: FinishedSpan[] = [];
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private closed = false;
  private lastWarned = -Infinity;
  private readonly url: URL;
  private readonly maxQueue: number;
  private readonly maxBatch: number;
  private readonly flushMs: number;
  private readonly timeoutMs: number;
  private readonly agent: http.Agent;
  readonly stats: ExporterStats = { exported: 0, droppedQueueFull: 0, droppedExportFailed: 0, failedRequests: 0, queued: 0 };

  constructor(private readonly o: OtlpExporterOptions) {
    const url = tracesUrl(o.endpoint);
    if (!url.ok) throw new TypeError(`ProxyConfig spec.tracing.otlpEndpoint: ${url.error}`);
    this.url = url.value;
    this.maxQueue = o.maxQueue ?? 2048;
    this.maxBatch = o.maxBatch ?? 512;
    this.flushMs = o.flushMs ?? 1000;
    this.timeoutMs = o.timeoutMs ?? 10_000;
    this.agent = new (this.url.protocol === 'https:' ? https.Agent : http.Agent)({ keepAlive: true, maxSockets: 1 });
  }

  get endpoint(): string { return this.url.href; }

  add(span: FinishedSpan): void {
    if (this.closed) return;
    if (this.queue.length >= this.maxQueue) { this.stats.droppedQueueFull++; return; }
    this.queue.push(span);
    this.stats.queued = this.queue.length;
    if (this.queue.length >= this.maxBatch) this.kick();
    else if (this.timer === undefined) {
      this.timer = setTimeout(() => { this.timer = undefined; this.kick(); }, this.flushMs);
      this.timer.unref();
    }
  }

  /** Sends what is queued now (batch by batch); resolves when the queue is empty or sending failed. */
  async flush(): Promise<void> {
    for (let guard = 0; guard < 1_000; guard++) {
      if (this.inFlight) { await this.inFlight; continue; }
      if (this.queue.length === 0) return;
      this.kick();
    }
  }

  /** Flushes what is queued (within the request deadline), then stops taking spans. */
  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    clearTimeout(this.timer);
    this.agent.destroy();
  }

  /** Cuts: drops what is queued and any request in flight. */
  destroy(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.queue = [];
    this.stats.queued = 0;
    this.agent.destroy();
  }

  private kick(): void {
    if (this.inFlight || this.queue.length === 0) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    const spans = this.queue.splice(0, this.maxBatch);
    this.stats.queued = this.queue.length;
    this.inFlight = this.send(spans).finally(() => {
      this.inFlight = undefined;
      // More arrived meanwhile: a full batch goes now, a partial one waits for the timer.
      if (this.closed) return;
      if (this.queue.length >= this.maxBatch) this.kick();
      else if (this.queue.length > 0 && this.timer === undefined) {
        this.timer = setTimeout(() => { this.timer = undefined; this.kick(); }, this.flushMs);
        this.timer.unref();
      }
    });
  }

  private async send(spans: FinishedSpan[]): Promise<void> {
    const batch: ExportBatch = { resource: this.o.resource ?? [], scope: SCOPE, spans };
    let body: Buffer;
    try { body = encodeExportRequest(batch); } catch (e) { return this.failed(spans.length, `encoding failed: ${(e as Error).message}`); }
    const r = await this.post(body);
    if (r.ok) { this.stats.exported += spans.length; return; }
    this.failed(spans.length, r.error);
  }

  private failed(n: number, why: string): void {
    this.stats.droppedExportFailed += n;
    this.stats.failedRequests++;
    this.stats.lastError = why;
    const now = Date.now();
    if (now - this.lastWarned < 60_000) return;
    this.lastWarned = now;
    this.o.log?.warn({ endpoint: this.url.href, dropped: n, error: why, droppedSoFar: this.stats.droppedExportFailed + this.stats.droppedQueueFull },
      'OTLP trace export failed; spans dropped. Check ProxyConfig spec.tracing.otlpEndpoint and that the collector accepts OTLP/HTTP protobuf there (port 4318, path /v1/traces)');
  }

  private post(body: Buffer): Promise<Result<void, string>> {
    return new Promise((resolve) => {
      const mod = this.url.protocol === 'https:' ? https : http;
      const req = mod.request(this.url, {
        method: 'POST', agent: this.agent, timeout: this.timeoutMs,
        headers: { 'content-type': 'application/x-protobuf', 'content-length': body.length, 'user-agent': `weft-proxy/${SCOPE.version}` },
      }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => { if (size < 4096) { chunks.push(c); size += c.length; } });
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) return resolve(ok(undefined));
          const text = Buffer.concat(chunks).toString('utf8').replace(/[^\x20-\x7e]+/g, ' ').trim().slice(0, 200);
          resolve(err(`collector answered ${status}${text ? `: ${text}` : ''}`));
        });
        res.on('error', (e) => resolve(err(e.message)));
      });
      // The deadline covers the whole exchange, not only idle gaps.
      const deadline = setTimeout(() => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
      deadline.unref();
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      req.on('error', (e: NodeJS.ErrnoException) => resolve(err(`${e.code ? `${e.code}: ` : ''}${e.message}`)));
      req.on('close', () => clearTimeout(deadline));
      req.end(body);
    });
  }
}
