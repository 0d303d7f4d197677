/**
 * The three prom-client classes the agent uses, loaded from their own files. prom-client's index
 * also loads its default process metrics, the cluster aggregator, Pushgateway, Summary (tdigest)
 * and, through processCpuTotal, all of @opentelemetry/api: 88 files and 12 MiB of resident memory
 * loaded alone, against 7 files and 0.4 MiB for these three (docs/memory.md). They are the very
 * classes the index exports (the same files in the module cache), so a Registry made either way
 * takes metrics made the other way.
 */
import type * as PromClient from 'prom-client';

export const Registry = require('prom-client/lib/registry') as typeof PromClient.Registry;
export const Counter = require('prom-client/lib/counter') as typeof PromClient.Counter;
export const Gauge = require('prom-client/lib/gauge') as typeof PromClient.Gauge;
export type Registry = PromClient.Registry;
export type Counter<T extends string = string> = PromClient.Counter<T>;
export type Gauge<T extends string = string> = PromClient.Gauge<T>;
