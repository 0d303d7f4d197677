import { err, ok, type Result } from '../core/result';
import type { Snapshot } from '../config/objects';
import type { DeltaResponse } from './discovery-proto';
import { ResourceSet } from './discovery-resources';

/**
 * The agent's side of discovery v2: its node's view as keyed resources, the epoch and version it
 * is at, and the Snapshot rebuilt from it. A full state replaces everything; a delta applies only
 * to the state it was computed from (same epoch, base_version = the version held), so a gap or a
 * mix-up between control-plane replicas is refused instead of silently applied. A refused message
 * leaves the state as it was.
 */
export class DiscoveryState {
  private readonly resources = new ResourceSet();
  private epoch: string | undefined;
  private version = 0;

  /** What to present to resume after a reconnect; undefined before the first state. */
  resumePoint(): { epoch: string; version: number } | undefined {
    return this.epoch === undefined ? undefined : { epoch: this.epoch, version: this.version };
  }

  currentVersion(): number {
    return this.version;
  }

  /** Applies the message; the Snapshot now in force, or why the message was refused. */
  apply(m: DeltaResponse): Result<Snapshot, string> {
    if (m.fullState) {
      this.resources.replace(m.resources);
    } else {
      if (m.epoch !== this.epoch) return err(`a delta of control-plane epoch ${m.epoch} while the agent holds epoch ${this.epoch ?? '(none)'}`);
      if (m.baseVersion !== this.version) return err(`a delta from version ${m.baseVersion} while the agent holds version ${this.version}`);
      for (const r of m.resources) this.resources.upsert(r);
      for (const r of m.removed) this.resources.remove(r.kind, r.key);
    }
    this.epoch = m.epoch;
    this.version = m.systemVersion;
    return ok(this.resources.snapshot());
  }
}
