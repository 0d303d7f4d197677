import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { createInterface } from 'node:readline';
import { Watch, type KubeConfig } from '@kubernetes/client-node';

/**
 * One Kubernetes watch (`GET …?watch=true`) for @kubernetes/client-node's ListWatch, which relists
 * and resumes from the last resourceVersion whenever a watch ends. The library's own Watch (1.4.0)
 * has no deadline at any step: it asks for no `timeoutSeconds`, and the 30 s abort signal it builds
 * is overwritten before use. A watch whose connection stalls without closing (a middlebox that drops
 * it, an API server that stops writing) therefore never ends, and the informer's view of that kind
 * stays frozen with no error logged. It also skips a line it cannot parse, losing that event.
 *
 * This watch, as client-go's reflector does, bounds every step:
 * - it asks the API server to end the watch after `timeoutSeconds`, drawn per watch from
 *   [minTimeoutSeconds, 2 × minTimeoutSeconds) so that informers do not all restart together;
 * - it asks for bookmarks, so the resourceVersion resumed from stays recent (fewer 410 relists);
 * - it ends the watch itself, as an error, when the response headers have not come within
 *   `headersMs`, or the watch is still open `graceMs` past the timeout it asked for;
 * - a line that is not JSON ends the watch as an error: the informer resumes from the last event it
 *   applied, and the API server sends the lost one again.
 * The owner aborting (ListWatch.stop(), or the restart that follows a watch's end) ends it quietly.
 */

export interface WatchTiming {
  minTimeoutSeconds: number;
  graceMs: number;
  headersMs: number;
}

/** client-go's reflector: a 5 min minimum, doubled at random. */
export const DEFAULT_WATCH_TIMING: WatchTiming = { minTimeoutSeconds: 300, graceMs: 30_000, headersMs: 30_000 };

/** `timeoutSeconds` of one watch: [min, 2 × min), `random` in [0, 1). */
export function watchTimeoutSeconds(minTimeoutSeconds: number, random: number): number {
  return Math.max(1, Math.floor(minTimeoutSeconds * (1 + random)));
}

/** At most this much of a refusal's body is read for its message. */
const ERROR_BODY_BYTES = 16 * 1024;

export class BoundedWatch extends Watch {
  constructor(config: KubeConfig, private readonly timing: WatchTiming = DEFAULT_WATCH_TIMING, private readonly random: () => number = Math.random) {
    super(config);
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: any, watchObj?: any) => void, // eslint-disable-line @typescript-eslint/no-explicit-any -- the library's signature
    done: (err: any) => void, // eslint-disable-line @typescript-eslint/no-explicit-any
  ): Promise<AbortController> {
    const cluster = this.config.getCurrentCluster();
    if (!cluster) throw new Error('No currently active cluster');
    const timeoutSeconds = watchTimeoutSeconds(this.timing.minTimeoutSeconds, this.random());
    const url = new URL(cluster.server + path);
    for (const [key, value] of Object.entries(queryParams)) if (value !== undefined) url.searchParams.set(key, String(value));
    url.searchParams.set('watch', 'true');
    url.searchParams.set('allowWatchBookmarks', 'true');
    url.searchParams.set('timeoutSeconds', String(timeoutSeconds));
    const options: RequestOptions = {};
    await this.config.applyToHTTPSOptions(options);

    const controller = new AbortController();
    let finished = false;
    let deadline: NodeJS.Timeout | undefined;
    const arm = (ms: number, why: () => string): void => {
      clearTimeout(deadline);
      deadline = setTimeout(() => end(new Error(why())), ms);
    };
    /** Ends the watch once; `error` null for a watch the API server ended as asked. */
    const end = (error: Error | null): void => {
      if (finished) return;
      finished = true;
      clearTimeout(deadline);
      req.destroy();
      done(error);
    };
    controller.signal.addEventListener('abort', () => {
      if (finished) return;
      finished = true;
      clearTimeout(deadline);
      req.destroy();
    });

    const send = url.protocol === 'http:' ? httpRequest : httpsRequest;
    const req = send(url, { ...options, method: 'GET' }, (res) => {
      if (finished) { res.destroy(); return; }
      if (res.statusCode !== 200) {
        refusal(res).then(end, end);
        return;
      }
      arm(timeoutSeconds * 1000 + this.timing.graceMs,
        () => `watch ${path} still open ${this.timing.graceMs} ms past the ${timeoutSeconds} s the API server was asked to end it in: the connection stalled`);
      const lines = createInterface({ input: res, crlfDelay: Infinity });
      lines.on('line', (line) => {
        if (finished || line.trim() === '') return;
        let event: { type?: unknown; object?: unknown };
        try {
          event = JSON.parse(line) as typeof event;
        } catch {
          end(new Error(`watch ${path}: a line that is not JSON (${JSON.stringify(line.slice(0, 80))}); resuming from the last event applied`));
          return;
        }
        callback(String(event.type), event.object, event);
      });
      // readline passes the response's errors on: both ends are handled, or one is thrown.
      res.on('error', (error) => end(error));
      lines.on('error', (error) => end(error));
      res.on('close', () => end(res.complete ? null : new Error(`watch ${path}: the connection closed in the middle of the response`)));
    });
    arm(this.timing.headersMs, () => `watch ${path}: no response in ${this.timing.headersMs} ms`);
    req.on('error', (error) => end(error));
    req.end();
    return controller;
  }
}

/** An error for a watch the API server refused, with its Status message and `statusCode` (ListWatch relists on 410). */
async function refusal(res: IncomingMessage): Promise<Error> {
  let body = '';
  for await (const chunk of res) {
    if (body.length < ERROR_BODY_BYTES) body += String(chunk);
  }
  let message = body.slice(0, 200);
  try {
    const status = JSON.parse(body) as { message?: unknown };
    if (typeof status.message === 'string') message = status.message;
  } catch { /* not a Status: the raw text is the message */ }
  return Object.assign(new Error(`${res.statusCode ?? 0} ${res.statusMessage ?? ''}: ${message}`.trim()), { statusCode: res.statusCode });
}
