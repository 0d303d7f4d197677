/**
 * Tracing as configured: ProxyConfig `spec.tracing` in force gives a Tracer and its OTLP exporter;
 * absent, none (the data path's one check per request). A changed configuration replaces both;
 * the old exporter flushes what it holds in the background.
 */
import type { TracingConfig } from '../config/proxy-config';
import type { Logger } from '../core/log';
import { OtlpExporter, type ExporterStats } from './otlp-exporter';
import { Tracer } from './tracing';

export class TracingRuntime {
  private current: { key: string; tracer: Tracer; exporter: OtlpExporter } | undefined;

  constructor(private readonly o: { node: string; log?: Logger }) {}

  /** The tracer in force; undefined when tracing is off. */
  get tracer(): Tracer | undefined {
    return this.current?.tracer;
  }

  /** Applies the configuration in force (undefined: off). Idempotent for an unchanged one. */
  configure(config: TracingConfig | undefined): void {
    const key = config === undefined ? '' : JSON.stringify([config.otlpEndpoint, config.samplingPercent, config.serviceName ?? null]);
    if ((this.current?.key ?? '') === key) return;
    const old = this.current;
    this.current = undefined;
    if (old) void old.exporter.close().catch(() => undefined);
    if (config === undefined) { this.o.log?.info('tracing off'); return; }
    try {
      const exporter = new OtlpExporter({ endpoint: config.otlpEndpoint, resource: [['k8s.node.name', this.o.node]], ...(this.o.log ? { log: this.o.log } : {}) });
      const tracer = new Tracer({ samplingPercent: config.samplingPercent, sink: exporter, node: this.o.node,
        ...(config.serviceName === undefined ? {} : { serviceName: config.serviceName }) });
      this.current = { key, tracer, exporter };
      this.o.log?.info({ endpoint: exporter.endpoint, samplingPercent: config.samplingPercent }, 'tracing on: spans exported over OTLP/HTTP');
    } catch (e) {
      this.o.log?.warn({ err: (e as Error).message }, 'tracing stays off: the ProxyConfig spec.tracing cannot be used');
    }
  }

  stats(): ExporterStats | undefined {
    return this.current?.exporter.stats;
  }

  async close(): Promise<void> {
    const old = this.current;
    this.current = undefined;
    await old?.exporter.close();
  }
}
