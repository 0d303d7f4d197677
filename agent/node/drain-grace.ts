/**
 * How long a stopping agent lets its established connections finish (docs/upgrade.md). A module of
 * its own, loading nothing else, so the CLI's flag parsing and the manifest test can read it.
 */
import { err, ok, type Result } from '../core/result';

/** The default drain: daemonset/agent.yaml's terminationGracePeriodSeconds (35) minus a margin to exit. */
export const DEFAULT_DRAIN_GRACE_MS = 30_000;
/** The longest drain `--drain-grace` accepts. */
export const MAX_DRAIN_GRACE_S = 3600;

/** `--drain-grace SECONDS` (fractions allowed, 0 cuts at once) as milliseconds. Pure. */
export function parseDrainGrace(text: string): Result<number, string> {
  const s = Number(text);
  if (text.trim() === '' || !Number.isFinite(s) || s < 0 || s > MAX_DRAIN_GRACE_S) {
    return err(`--drain-grace must be a number of seconds from 0 to ${MAX_DRAIN_GRACE_S} (got ${JSON.stringify(text)}); keep it below the pod's terminationGracePeriodSeconds`);
  }
  return ok(Math.round(s * 1000));
}
