/**
 * A prom-client Registry whose text exposition goes on with families written by Weft itself
 * (series.ts: Istio's per-request series, kept apart from prom-client because hashing their labels
 * per request cost more than the request). Everything that reads `registry.metrics()` (tests,
 * benchmarks) sees one document: prom-client's families, then these. The /metrics endpoint streams
 * the same document (`stream()`): written in Buffers, not made into one string, in slices that let
 * the proxy's event loop run between them, waiting while the socket is full.
 * Only text format 0.0.4 is written (Prometheus' default; what Istio's agents serve).
 */
import type { Writable } from 'node:stream';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { Registry } from './prom-classes';
import { ExpositionWriter } from './exposition-writer';
import type { Pause } from './series';

/** Something that writes whole families at each scrape (exposition.ts: writeHeader, then samples), pausing between slices when given `pause`. */
export interface ExpositionSource {
  render(w: ExpositionWriter, pause?: Pause): Promise<void>;
}

export class ExpositionRegistry extends Registry {
  private readonly sources: ExpositionSource[] = [];

  /** Adds families written at each scrape after prom-client's; their names must not be registered in prom-client too. */
  addSource(source: ExpositionSource): void {
    this.sources.push(source);
  }

  private async write(w: ExpositionWriter, base: string, pause?: Pause): Promise<void> {
    // prom-client's text ends with one newline ("\n" alone when it holds nothing).
    if (base !== '\n') w.text(base);
    for (const s of this.sources) await s.render(w, pause);
  }

  /** The whole exposition as Buffers, in order, written in one go. */
  async exposition(): Promise<Buffer[]> {
    const w = new ExpositionWriter();
    await this.write(w, await super.metrics());
    return w.end();
  }

  /**
   * Collects prom-client's families (what may fail: a collect() callback throwing), then opens the
   * output and writes the whole exposition to it chunk by chunk, letting the event loop run
   * between slices of series and waiting while the output is full; ends it. Returns the bytes written.
   */
  async stream(open: () => Writable): Promise<number> {
    const base = await super.metrics();
    const out = open();
    let full = false;
    // A scraper that hangs up closes the output; one whose socket is full never drains it then.
    let closed = false;
    let wake: (() => void) | undefined;
    const onClose = () => { closed = true; wake?.(); };
    const onDrain = () => wake?.();
    out.on('close', onClose).on('drain', onDrain);
    const w = new ExpositionWriter((chunk) => { if (!closed && !out.write(chunk)) full = true; });
    try {
      await this.write(w, base, async () => {
        if (full && !closed) {
          full = false;
          await new Promise<void>((resolve) => { wake = resolve; });
          wake = undefined;
        } else {
          await yieldToLoop();
        }
        if (closed || out.destroyed) throw new Error('the scraper went away');
      });
    } finally {
      out.off('close', onClose).off('drain', onDrain);
    }
    const n = w.length;
    for (const c of w.end()) out.write(c);
    out.end();
    return n;
  }

  override async metrics(): Promise<string> {
    const chunks = await this.exposition();
    return chunks.length === 0 ? '\n' : Buffer.concat(chunks).toString('utf8');
  }

  override setContentType(contentType: string): void {
    if (contentType !== Registry.PROMETHEUS_CONTENT_TYPE) {
      throw new Error(`metrics registry: content type ${contentType} is not written here; Weft serves ${Registry.PROMETHEUS_CONTENT_TYPE} only (set the scraper to accept it)`);
    }
    super.setContentType(contentType);
  }
}
