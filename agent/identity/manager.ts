import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import type { Logger } from '../core/log';
import { CertCache, judgeCached } from './cert-cache';
import { generateWorkloadKey } from './keys';
import { backoff, renewAt } from './renewal';

/** Asks the control plane to sign a CSR; resolves to the chain, leaf first (`requestCertificate` bound to a connection). */
export type CertificateRequester = (csrPem: string, validitySeconds: number) => Promise<string[]>;

export interface IdentityManagerOptions {
  request: CertificateRequester;
  validitySeconds?: number;
  log: Logger;
  now?: () => Date;
  /**
   * Keys and certificates kept under `<dataDir>/identities/` across restarts (cert-cache.ts): a
   * cached pair that still chains to `trustBundle()` and is not due for renewal is served instead
   * of requesting a new one. Without it they live in this process's memory only.
   */
  cache?: { dataDir: string; trustBundle: () => string };
  /** How long a certificate is still served after its last workload left this node (DROP_GRACE_MS). */
  dropGraceMs?: number;
}

/**
 * A certificate is still served this long after the last local workload running as its identity
 * left (deleted, or out of the mesh), then dropped. Nodes apply a change moments apart: a source
 * node that has not yet seen the pod leave still tunnels to it here, naming its identity in the
 * TLS handshake. Dropped at once, the certificate failed those handshakes and the client saw a
 * reset (measured: 2-4 of 276-368 connections made during 30 label flips, in 4 runs of 9).
 */
export const DROP_GRACE_MS = 5_000;

export interface WorkloadCertificate {
  /** PKCS#8 PEM, generated in this agent. */
  keyPem: string;
  /** Leaf first, PEM each. */
  chainPem: string[];
  notBefore: Date;
  notAfter: Date;
}

export interface IdentityStatus {
  identity: string;
  /** Expiry of the certificate being served, if there is one. */
  notAfter?: Date;
  /** Why the latest attempt failed; cleared by the next success. */
  lastError?: string;
  renewals: number;
  nextAttempt?: Date;
}

interface Waiter {
  resolve: (certificate: WorkloadCertificate) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

interface Entry {
  identity: string;
  certificate?: WorkloadCertificate;
  renewals: number;
  /** Consecutive failed attempts. */
  failures: number;
  lastError?: string;
  timer?: NodeJS.Timeout;
  nextAttempt?: Date;
  waiters: Set<Waiter>;
  /** set while no local workload wants it: the certificate is dropped when it fires */
  dropTimer?: NodeJS.Timeout;
}

/**
 * One key pair and certificate per local workload identity: keys are generated here, only CSRs
 * leave the agent. Certificates are renewed at about half their lifetime with a fresh key; the
 * current one is served until its replacement arrives or it expires, whatever the control plane does.
 * With `cache`, each pair is also kept on the node's disk (cert-cache.ts) and served again by the
 * next agent on the node while it is fit, instead of being requested again.
 */
export class IdentityManager {
  private readonly entries = new Map<string, Entry>();
  private readonly request: CertificateRequester;
  private readonly validitySeconds: number;
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly disk: CertCache | undefined;
  private readonly trustBundle: () => string;
  private readonly dropGraceMs: number;
  private closed = false;

  constructor({ request, validitySeconds = 86_400, log, now = () => new Date(), cache, dropGraceMs = DROP_GRACE_MS }: IdentityManagerOptions) {
    this.request = request;
    this.dropGraceMs = dropGraceMs;
    this.validitySeconds = validitySeconds;
    this.log = log;
    this.now = now;
    this.trustBundle = cache?.trustBundle ?? (() => '');
    if (cache) {
      const opened = CertCache.open(cache.dataDir);
      if (opened.ok) this.disk = opened.value;
      else log.warn({ error: opened.error }, 'certificates are not cached on disk: a restarted agent requests them again');
    }
  }

  /**
   * The identities of this node's local workloads: new ones are requested; the others are dropped,
   * a held certificate after dropGraceMs (served meanwhile, and kept if wanted again by then).
   */
  setWanted(identities: string[]): void {
    if (this.closed) return;
    const wanted = new Set(identities);
    for (const [identity, entry] of this.entries) {
      if (wanted.has(identity)) {
        clearTimeout(entry.dropTimer);
        entry.dropTimer = undefined;
        continue;
      }
      if (entry.dropTimer !== undefined) continue;
      if (this.get(identity) === undefined) {
        this.drop(entry);
        continue;
      }
      entry.dropTimer = setTimeout(() => { if (this.current(entry)) this.drop(entry); }, this.dropGraceMs);
      entry.dropTimer.unref();
    }
    for (const identity of wanted) {
      if (this.entries.has(identity)) continue;
      const entry: Entry = { identity, renewals: 0, failures: 0, waiters: new Set() };
      this.entries.set(identity, entry);
      if (!this.fromDisk(entry)) void this.attempt(entry);
    }
  }

  private drop(entry: Entry): void {
    const { identity } = entry;
    this.entries.delete(identity);
    clearTimeout(entry.timer);
    clearTimeout(entry.dropTimer);
    const removed = this.disk?.remove(identity);
    if (removed && !removed.ok) this.log.warn({ identity, error: removed.error }, 'could not remove the cached key and certificate of a dropped identity');
    for (const waiter of entry.waiters) this.settle(entry, waiter, new Error(`identity ${identity} is no longer used by a workload on this node`));
    this.log.info({ identity }, 'identity dropped: no local workload runs as it any more');
  }

  /**
   * Serves the cached pair of a new entry when it is fit (cert-cache.ts judges); anything else on
   * disk for it is logged with the file and why, and removed. False: request one as usual.
   */
  private fromDisk(entry: Entry): boolean {
    if (!this.disk) return false;
    const files = this.disk.filesFor(entry.identity);
    let refusal: { file: string; reason: string } | undefined;
    try {
      const read = this.disk.read(entry.identity);
      if (!read.ok) {
        refusal = read.error;
      } else if (read.value) {
        const judged = judgeCached(entry.identity, read.value, this.trustBundle(), this.now());
        if (judged.ok) {
          const { notBefore, notAfter } = judged.value;
          entry.certificate = { keyPem: read.value.keyPem, chainPem: read.value.chainPem, notBefore, notAfter };
          this.log.info({ identity: entry.identity, notAfter: notAfter.toISOString(), file: files.chain }, 'certificate loaded from the on-disk cache');
          // Renewed when it would have been had this agent received it (40-60 % of its lifetime): after dueAt, so later than now.
          this.schedule(entry, renewAt(notBefore, notAfter, notBefore));
          return true;
        }
        if (judged.error.due) {
          this.log.info({ identity: entry.identity, file: files.chain, reason: judged.error.reason }, 'cached certificate due for renewal: requesting a new one');
          return false; // replaced on disk when the new one arrives
        }
        refusal = { file: files[judged.error.which], reason: judged.error.reason };
      }
    } catch (e) {
      refusal = { file: files.chain, reason: `reading it failed: ${(e as Error).message}` };
    }
    if (refusal) {
      this.log.warn({ identity: entry.identity, file: refusal.file, reason: refusal.reason },
        'cached key or certificate refused and removed: requesting a new certificate');
      const removed = this.disk.remove(entry.identity);
      if (!removed.ok) this.log.warn({ identity: entry.identity, error: removed.error }, 'could not remove the refused cache files');
    }
    return false;
  }

  /** The certificate to present for `identity`, if one is held and unexpired. */
  get(identity: string): WorkloadCertificate | undefined {
    const certificate = this.entries.get(identity)?.certificate;
    return certificate && certificate.notAfter > this.now() ? certificate : undefined;
  }

  /** Resolves with the certificate once there is one; rejects after `timeoutMs`, saying why there is none. */
  whenReady(identity: string, timeoutMs: number): Promise<WorkloadCertificate> {
    const ready = this.get(identity);
    if (ready) return Promise.resolve(ready);
    const entry = this.entries.get(identity);
    if (!entry) return Promise.reject(new Error(`no certificate for ${identity}: no workload on this node runs as it`));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          const why = entry.lastError ?? 'the control plane has not answered yet';
          this.settle(entry, waiter, new Error(`no certificate for ${identity} after ${timeoutMs} ms: ${why}`));
        }, timeoutMs),
      };
      entry.waiters.add(waiter);
    });
  }

  /** Per identity, sorted: for `weft status` and the admin `/certs`. */
  status(): IdentityStatus[] {
    return [...this.entries.values()]
      .sort((a, b) => (a.identity < b.identity ? -1 : a.identity > b.identity ? 1 : 0))
      .map((entry) => ({
        identity: entry.identity,
        notAfter: this.get(entry.identity)?.notAfter,
        lastError: entry.lastError,
        renewals: entry.renewals,
        nextAttempt: entry.nextAttempt,
      }));
  }

  /** Stops every timer; pending `whenReady` calls reject. Certificates already handed out stay usable. */
  close(): void {
    this.closed = true;
    for (const entry of this.entries.values()) {
      clearTimeout(entry.timer);
      clearTimeout(entry.dropTimer);
      for (const waiter of entry.waiters) this.settle(entry, waiter, new Error(`no certificate for ${entry.identity}: the identity manager is closed`));
    }
    this.entries.clear();
  }

  private settle(entry: Entry, waiter: Waiter, outcome: WorkloadCertificate | Error): void {
    clearTimeout(waiter.timer);
    entry.waiters.delete(waiter);
    if (outcome instanceof Error) waiter.reject(outcome);
    else waiter.resolve(outcome);
  }

  private current(entry: Entry): boolean {
    return !this.closed && this.entries.get(entry.identity) === entry;
  }

  private schedule(entry: Entry, at: Date): void {
    entry.nextAttempt = at;
    entry.timer = setTimeout(() => void this.attempt(entry), Math.max(0, at.getTime() - this.now().getTime()));
    entry.timer.unref();
  }

  private async attempt(entry: Entry): Promise<void> {
    entry.timer = undefined;
    entry.nextAttempt = undefined;
    let issued: WorkloadCertificate;
    try {
      const { keyPem, csrPem } = await generateWorkloadKey(entry.identity);
      const chainPem = await this.request(csrPem, this.validitySeconds);
      issued = validateIssued(entry.identity, keyPem, chainPem, this.now());
    } catch (error) {
      if (this.current(entry)) this.failed(entry, error instanceof Error ? error.message : String(error));
      return;
    }
    if (this.current(entry)) this.succeeded(entry, issued);
  }

  private succeeded(entry: Entry, issued: WorkloadCertificate): void {
    const context = { identity: entry.identity, notAfter: issued.notAfter.toISOString() };
    if (entry.lastError !== undefined) this.log.info({ ...context, failedAttempts: entry.failures }, 'certificate request succeeded again');
    if (entry.certificate) {
      entry.renewals += 1;
      this.log.debug(context, 'certificate renewed');
    } else {
      this.log.info(context, 'certificate issued');
    }
    entry.certificate = issued;
    const stored = this.disk?.write(entry.identity, { keyPem: issued.keyPem, chainPem: issued.chainPem });
    if (stored && !stored.ok) this.log.warn({ identity: entry.identity, error: stored.error }, 'could not cache the certificate on disk: a restarted agent requests it again');
    entry.failures = 0;
    entry.lastError = undefined;
    for (const waiter of entry.waiters) this.settle(entry, waiter, issued);
    this.schedule(entry, renewAt(issued.notBefore, issued.notAfter, this.now()));
  }

  private failed(entry: Entry, message: string): void {
    const now = this.now();
    const held = entry.certificate;
    if (held && held.notAfter <= now) {
      entry.certificate = undefined;
      this.log.error({ identity: entry.identity, notAfter: held.notAfter.toISOString(), error: message },
        'certificate expired before it could be renewed: connections with this identity fail until the control plane signs a new one');
    } else if (message !== entry.lastError) {
      const still = held ? `the current certificate is served until ${held.notAfter.toISOString()}` : 'no certificate yet';
      this.log.warn({ identity: entry.identity, error: message }, `certificate request failing, retrying with backoff; ${still}`);
    }
    entry.lastError = message;
    const delay = backoff(entry.failures, { now, notAfter: entry.certificate?.notAfter });
    entry.failures += 1;
    this.schedule(entry, new Date(now.getTime() + delay));
  }
}

function uriSans(leaf: X509Certificate): string[] {
  return (leaf.subjectAltName ?? '').split(', ').filter((name) => name.startsWith('URI:')).map((name) => name.slice('URI:'.length));
}

/** Checks what the control plane sent before it is served: for the identity asked for, with the key generated here, unexpired. */
function validateIssued(identity: string, keyPem: string, chainPem: string[], now: Date): WorkloadCertificate {
  const leafPem = chainPem[0];
  if (leafPem === undefined) throw new Error(`the control plane sent an empty chain for ${identity}`);
  const leaf = new X509Certificate(leafPem);
  const sans = uriSans(leaf);
  if (sans.length !== 1 || sans[0] !== identity) {
    throw new Error(`rejected the certificate the control plane sent for ${identity}: its URI SANs are [${sans.join(', ')}]`);
  }
  if (!leaf.publicKey.equals(createPublicKey(createPrivateKey(keyPem)))) {
    throw new Error(`rejected the certificate the control plane sent for ${identity}: its public key is not the one in the CSR`);
  }
  const notBefore = new Date(leaf.validFrom);
  const notAfter = new Date(leaf.validTo);
  if (notAfter <= now) throw new Error(`rejected the certificate the control plane sent for ${identity}: it expired at ${notAfter.toISOString()} (check the clocks)`);
  return { keyPem, chainPem, notBefore, notAfter };
}
