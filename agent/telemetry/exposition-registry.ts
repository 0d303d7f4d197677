/**
 * A prom-client Registry whose text exposition goes on with families written by Weft itself
 * (series.ts: Istio's per-request series, kept apart from prom-client because hashing their labels
 * per request cost more than the request). Everything that reads `registry.metrics()` (the
 * /metrics endpoint, tests, benchmarks) sees one document: prom-client's families, then these.
 * Only text format 0.0.4 is written (Prometheus' default; what Istio's agents serve).
 */
import { Registry } from 'prom-client';

/** Something that writes whole families: lines appended to `out`, a '' before each family unless `out` is empty. */
export interface ExpositionSource {
  render(out: string[]): void;
}

export class ExpositionRegistry extends Registry {
  private readonly sources: ExpositionSource[] = [];

  constructor() {
    super();
  }

  /** Adds families written at each scrape after prom-client's; their names must not be registered in prom-client too. */
  addSource(source: ExpositionSource): void {
    this.sources.push(source);
  }

  override async metrics(): Promise<string> {
    const base = await super.metrics();
    const out: string[] = [];
    for (const s of this.sources) s.render(out);
    if (out.length === 0) return base;
    const tail = out.join('\n');
    // prom-client's text ends with one newline ("\n" alone when it holds nothing); families are parted by a blank line.
    return base === '\n' ? `${tail}\n` : `${base}\n${tail}\n`;
  }

  override setContentType(contentType: string): void {
    if (contentType !== Registry.PROMETHEUS_CONTENT_TYPE) {
      throw new Error(`metrics registry: content type ${contentType} is not written here; Weft serves ${Registry.PROMETHEUS_CONTENT_TYPE} only (set the scraper to accept it)`);
    }
    super.setContentType(contentType);
  }
}
