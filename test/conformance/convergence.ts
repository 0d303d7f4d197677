/**
 * When a case is decided. Pass: upstream's rule, RequiredConsecutiveSuccesses (3) matching answers
 * in a row within MaxTimeToConsistency (30 s), polling every 100 ms after a failure. Fail: at 30 s,
 * or earlier when waiting cannot change the outcome: the control plane refused the test's config
 * (the routes will never be in force: the first failing answer decides), or the config has been in force on every agent for the
 * settle window and the case still has not passed. `settleMs: null` is upstream's timing exactly.
 */

export interface ConvergenceRule {
  consecutive: number;
  maxMs: number;
  pollMs: number;
  /** after the config is confirmed in force (and the case started), how long a case may still take; null = until maxMs */
  settleMs: number | null;
}

export const UPSTREAM_RULE: ConvergenceRule = { consecutive: 3, maxMs: 30_000, pollMs: 100, settleMs: null };

/** What is known about the test's config when a case is being decided. */
export type ConfigState =
  | { state: 'pending' }
  | { state: 'in-force'; since: number }
  | { state: 'refused'; why: string };

export type Decision =
  | { verdict: 'continue'; waitMs: number }
  | { verdict: 'pass'; attempts: number }
  | { verdict: 'fail'; attempts: number; reason: string };

/** `outcomes`: pass/fail of each attempt so far, oldest first. */
export function decide(rule: ConvergenceRule, startedAt: number, now: number, outcomes: readonly boolean[], config: ConfigState): Decision {
  const n = outcomes.length;
  let run = 0;
  for (let i = n - 1; i >= 0 && outcomes[i]; i--) run++;
  if (run >= rule.consecutive) return { verdict: 'pass', attempts: n };
  const elapsed = now - startedAt;
  // Refused: the routes will never be in force; a case still gets its run of passes (it may expect
  // what holds without them), but its first failure decides it.
  if (config.state === 'refused' && n >= 1 && !outcomes[n - 1]) {
    return { verdict: 'fail', attempts: n, reason: `the control plane refused the test's config, so its routes are not in force: ${config.why}` };
  }
  if (elapsed >= rule.maxMs) {
    return { verdict: 'fail', attempts: n, reason: `no ${rule.consecutive} consecutive matching answers within ${rule.maxMs / 1000} s (${n} attempts)` };
  }
  if (rule.settleMs !== null && config.state === 'in-force') {
    const settledAt = Math.max(startedAt, config.since) + rule.settleMs;
    if (now >= settledAt && run === 0) {
      return {
        verdict: 'fail', attempts: n,
        reason: `no ${rule.consecutive} consecutive matching answers within ${rule.settleMs / 1000} s of the config being in force on every agent (${n} attempts; upstream would poll until ${rule.maxMs / 1000} s: --full-wait)`,
      };
    }
  }
  return { verdict: 'continue', waitMs: n === 0 || outcomes[n - 1] ? 0 : rule.pollMs };
}
