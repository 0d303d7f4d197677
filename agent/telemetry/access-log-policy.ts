/**
 * Which access-log lines are written (ProxyConfig `spec.accessLog`), decided per line before the
 * line is built: a dropped line costs one call and no allocation of its fields.
 *
 * A line is one of three kinds: a denial (the policy said no), an error (a status of 400 or more,
 * no response at all, a response flag other than `-`, or an error message: Envoy's and Istio's
 * usual "log only failures" filter), or a success. `level` says which kinds are wanted;
 * `samplingPercent` thins out successes only, so every failure an operator may need to explain
 * stays in the log. Pure, apart from the draw the caller passes in.
 */
import type { AccessLineFacts, AccessLogGate } from '../core/log';
import type { AccessLogConfig, AccessLogLevel } from '../config/proxy-config';

export type AccessLineKind = 'success' | 'error' | 'denial';

export const DEFAULT_ACCESS_LOG: Readonly<AccessLogConfig> = Object.freeze({ enabled: true, level: 'all', samplingPercent: 100 });

/** The kind of a line from what the call site knows when it is about to write it. Pure. */
export function lineKind(f: AccessLineFacts): AccessLineKind {
  if (f.decision === 'deny' || f.flags === 'DENY') return 'denial';
  if (f.error !== undefined && f.error !== '') return 'error';
  if (f.flags !== undefined && f.flags !== '-') return 'error';
  if (f.status !== undefined && (f.status >= 400 || f.status === 0)) return 'error';
  return 'success';
}

const WANTED: Record<AccessLogLevel, Record<AccessLineKind, boolean>> = {
  all: { success: true, error: true, denial: true },
  errors: { success: false, error: true, denial: true },
  denials: { success: false, error: false, denial: true },
};

/**
 * Whether a line of `kind` is written under `config`. `draw()` returns a number in [0, 100) and
 * is called only for a success whose fate the sampling decides (0 < samplingPercent < 100). Pure.
 */
export function logsLine(config: AccessLogConfig, kind: AccessLineKind, draw: () => number): boolean {
  if (!config.enabled || !WANTED[config.level][kind]) return false;
  if (kind !== 'success' || config.samplingPercent >= 100) return true;
  if (config.samplingPercent <= 0) return false;
  return draw() < config.samplingPercent;
}

const uniformPercent = (): number => Math.random() * 100;

/**
 * The gate an agent installs on its access log (core/log.ts `gateAccessLog`): asks `current()`
 * for the configuration in force at each line, so a new snapshot applies to live connections too.
 */
export function accessLogGate(current: () => AccessLogConfig, draw: () => number = uniformPercent): AccessLogGate {
  return (facts) => logsLine(current(), lineKind(facts), draw);
}
