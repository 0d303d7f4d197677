import { unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { err, ok, type Result } from '../core/result';
import { readIfExists, writeFileAtomic } from './data-dir';

/**
 * Where the CA's root is kept: its signing key and the trust bundle (every active root, the
 * signing root first). The data directory in local mode, a Kubernetes Secret in Kubernetes mode
 * (ca-store-secret.ts). What is checked on load is decided in ca-roots.ts, not here.
 */

export interface StoredRoot {
  /** PEM private key of the signing root. */
  keyPem?: string;
  /** PEM trust bundle. */
  bundlePem?: string;
}

export interface RootStore {
  /** For logs and messages: "data directory /var/lib/weft", "Secret weft-system/weft-ca". */
  readonly location: string;
  /** Where the key and the bundle are, as an operator would look for them. */
  readonly keyName: string;
  readonly bundleName: string;
  /** The error for a store that holds one of the two: what is missing and how to recover. */
  halfPresent(missing: 'key' | 'bundle'): string;
  read(): Promise<Result<StoredRoot, string>>;
  /**
   * First start (read() found neither): stores both. `false` when someone else stored a root first
   * (another control plane replica): nothing was written, read again and use theirs.
   */
  create(root: Required<StoredRoot>): Promise<Result<boolean, string>>;
  /** Replaces what is given. Bundle and key together are one rotation step. */
  write(root: StoredRoot): Promise<Result<void, string>>;
}

/**
 * Where the trust bundle is published for agents to read (Kubernetes: a ConfigMap they mount,
 * trust-bundle-configmap.ts). A copy, never read back: the root store stays the source of truth.
 */
export interface TrustBundlePublisher {
  /** For logs and messages: "ConfigMap weft-system/weft-trust-bundle". */
  readonly location: string;
  /** Makes the published bundle `bundlePem`; nothing is written when it already is. */
  publish(bundlePem: string): Promise<Result<void, string>>;
}

/** `DIR/ca-key.pem` (0600) and `DIR/ca.pem` (0644), each replaced atomically. */
export class DataDirRootStore implements RootStore {
  readonly location: string;
  readonly keyName: string;
  readonly bundleName: string;

  constructor(dir: string) {
    this.location = `data directory ${dir}`;
    this.keyName = join(dir, 'ca-key.pem');
    this.bundleName = join(dir, 'ca.pem');
  }

  halfPresent(missing: 'key' | 'bundle'): string {
    const [present, absent] = missing === 'bundle' ? [this.keyName, this.bundleName] : [this.bundleName, this.keyName];
    return `${present} exists but ${absent} does not: restore ${absent} from a backup, or remove both to create a new root (then every agent needs the new ca.pem)`;
  }

  async read(): Promise<Result<StoredRoot, string>> {
    try {
      const keyPem = readIfExists(this.keyName);
      const bundlePem = readIfExists(this.bundleName);
      return ok({ ...(keyPem !== undefined ? { keyPem } : {}), ...(bundlePem !== undefined ? { bundlePem } : {}) });
    } catch (error) {
      return err(`cannot read the root in ${this.location}: ${(error as Error).message}`);
    }
  }

  /** One process owns a data directory: there is no one to lose a race to. */
  async create(root: Required<StoredRoot>): Promise<Result<boolean, string>> {
    const written = this.writeFiles([[this.keyName, root.keyPem, 0o600], [this.bundleName, root.bundlePem, 0o644]]);
    if (written.ok) return ok(true);
    // Neither existed (read() said so): a key without its bundle would refuse every later start
    // (halfPresent), so a first start that could not finish (a full disk) takes the key back.
    try { unlinkSync(this.keyName); } catch { /* never written */ }
    return written;
  }

  /**
   * Bundle first, key second: a crash in between leaves a new root trusted but not yet signing.
   * The files are written before the returned promise settles (synchronously).
   */
  async write(root: StoredRoot): Promise<Result<void, string>> {
    const files: Array<[string, string, number]> = [];
    if (root.bundlePem !== undefined) files.push([this.bundleName, root.bundlePem, 0o644]);
    if (root.keyPem !== undefined) files.push([this.keyName, root.keyPem, 0o600]);
    return this.writeFiles(files);
  }

  private writeFiles(files: Array<[string, string, number]>): Result<void, string> {
    for (const [path, data, mode] of files) {
      try {
        writeFileAtomic(path, data, mode);
      } catch (error) {
        return err((error as Error).message); // names the path and what to do (writeFileAtomic)
      }
    }
    return ok(undefined);
  }
}
