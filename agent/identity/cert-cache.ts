/**
 * Workload keys and certificates kept on the node's disk, so a restarted or successor agent
 * (docs/upgrade.md) serves what it already has instead of asking the control plane again.
 *
 * `<data dir>/identities/` (0700) holds per identity `<hash>.key.pem` (PKCS#8, 0600) and
 * `<hash>.chain.pem` (leaf first, 0600); the name is a hash of the SPIFFE ID, so no identity can
 * name a path. Files are replaced atomically. What is read back is judged by `judgeCached` (pure):
 * a pair is used only when it is for that identity, the key is the certificate's, it chains to the
 * roots trusted now and it is not yet due for renewal.
 */
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { chmodSync, lstatSync, mkdirSync, readFileSync, unlinkSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { err, ok, type Result } from '../core/result';
import { fsAdvice, writeFileAtomic } from '../controlplane/data-dir';
import { renewAt } from './renewal';

export const IDENTITIES_DIR = 'identities';
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The two files of one identity. */
export interface CacheFiles {
  key: string;
  chain: string;
}

/** What the files hold, unjudged. */
export interface CachedPair {
  keyPem: string;
  /** Leaf first, PEM each. */
  chainPem: string[];
}

/** A file that must not be used, and why: logged, then both files of the identity are removed. */
export interface CacheRefusal {
  file: string;
  reason: string;
}

/** A cached pair fit to serve, with when it is due for renewal. */
export interface UsableCertificate {
  notBefore: Date;
  notAfter: Date;
  /** The earliest moment renewal.ts would renew it: the cache is not used from then on. */
  dueAt: Date;
}

/** Which file of a pair is at fault, and why. */
export interface CacheFault {
  which: keyof CacheFiles;
  reason: string;
  /** Sound but due for renewal: replaced as usual, nothing wrong with the cache. */
  due?: true;
}

const fault = (which: keyof CacheFiles, reason: string, due?: true) => err<CacheFault>({ which, reason, ...(due ? { due } : {}) });

/** Each PEM certificate in `text`, in order. */
export function pemCertificates(text: string): string[] {
  return [...text.matchAll(PEM_CERTIFICATE)].map((m) => `${m[0]}\n`);
}

function uriSans(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '').split(', ').filter((name) => name.startsWith('URI:')).map((name) => name.slice('URI:'.length));
}

/**
 * Whether a cached pair may be served for `identity` at `now` (pure: no file, no clock). Refused:
 * a key or chain that does not parse, a leaf for another identity, a key that is not the leaf's,
 * a leaf not yet valid, expired or due for renewal, a chain that does not end at one of
 * `trustBundlePem`'s roots (valid now) through correctly signed links.
 */
export function judgeCached(identity: string, pair: CachedPair, trustBundlePem: string, now: Date): Result<UsableCertificate, CacheFault> {
  let key;
  try {
    key = createPrivateKey(pair.keyPem);
  } catch (e) {
    return fault('key', `it does not parse as a PEM private key (${(e as Error).message})`);
  }
  if (pair.chainPem.length === 0) return fault('chain', 'the chain file holds no PEM certificate');
  let chain: X509Certificate[];
  try {
    chain = pair.chainPem.map((pem) => new X509Certificate(pem));
  } catch (e) {
    return fault('chain', `the chain does not parse as PEM certificates (${(e as Error).message})`);
  }
  const leaf = chain[0]!;
  const sans = uriSans(leaf);
  if (sans.length !== 1 || sans[0] !== identity) return fault('chain', `the certificate is for [${sans.join(', ')}], not ${identity}`);
  if (!leaf.checkPrivateKey(key)) return fault('key', 'it is not the key of the cached certificate (their public keys differ)');
  const notBefore = new Date(leaf.validFrom);
  const notAfter = new Date(leaf.validTo);
  if (notAfter <= now) return fault('chain', `the certificate expired at ${notAfter.toISOString()}`);
  if (notBefore > now) return fault('chain', `the certificate is not valid before ${notBefore.toISOString()} (check the clock)`);
  const dueAt = renewAt(notBefore, notAfter, notBefore, 0);
  if (dueAt <= now) return fault('chain', `the certificate was due for renewal at ${dueAt.toISOString()} (expires ${notAfter.toISOString()})`, true);
  const roots = pemCertificates(trustBundlePem).flatMap((pem) => {
    try { return [new X509Certificate(pem)]; } catch { return []; }
  }).filter((root) => new Date(root.validTo) > now);
  // Walk up from the leaf: each link signed by the next, ending at a trusted root.
  let current = leaf;
  const intermediates = chain.slice(1);
  for (let depth = 0; depth <= intermediates.length; depth++) {
    if (roots.some((root) => current.checkIssued(root) && current.verify(root.publicKey))) return ok({ notBefore, notAfter, dueAt });
    const parent = intermediates.find((c) => c !== current && current.checkIssued(c) && current.verify(c.publicKey) && new Date(c.validTo) > now);
    if (!parent) break;
    current = parent;
  }
  return fault('chain', `the certificate does not chain to a root the agent trusts now (issuer ${leaf.issuer.replace(/\n/g, ', ')}; ${roots.length} roots in the trust bundle)`);
}

/** Why a file may not be read as a secret of this agent, or undefined when it may. */
function unsafe(stats: Stats): string | undefined {
  if (!stats.isFile()) return 'it is not a regular file (a symbolic link or other)';
  const uid = process.getuid?.();
  if (uid !== undefined && stats.uid !== uid) return `it is owned by uid ${stats.uid}, not by this agent (uid ${uid})`;
  if ((stats.mode & 0o077) !== 0) return `its mode is 0${(stats.mode & 0o777).toString(8)}: group or other may read or write it, so the key may have been read`;
  return undefined;
}

/** The on-disk store: file names, modes, atomic writes. Judging the content is `judgeCached`'s. */
export class CertCache {
  private constructor(readonly dir: string) {}

  /** `<dataDir>/identities`, created 0700 (an existing one is narrowed to 0700). */
  static open(dataDir: string): Result<CertCache, string> {
    const dir = join(dataDir, IDENTITIES_DIR);
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const stats = lstatSync(dir);
      if (!stats.isDirectory()) return err(`${dir} is not a directory: move it away`);
      const uid = process.getuid?.();
      if (uid !== undefined && stats.uid !== uid) return err(`${dir} is owned by uid ${stats.uid}, not by this agent (uid ${uid}): remove it or fix its owner`);
      if ((stats.mode & 0o077) !== 0) chmodSync(dir, 0o700);
    } catch (e) {
      return err(`cannot use ${dir}: ${fsAdvice(e)}`);
    }
    return ok(new CertCache(dir));
  }

  filesFor(identity: string): CacheFiles {
    const name = createHash('sha256').update(identity).digest('hex').slice(0, 32);
    return { key: join(this.dir, `${name}.key.pem`), chain: join(this.dir, `${name}.chain.pem`) };
  }

  /** The stored pair; `undefined` when neither file exists; a refusal for a missing half, an unsafe file or an unreadable one. */
  read(identity: string): Result<CachedPair | undefined, CacheRefusal> {
    const files = this.filesFor(identity);
    const texts: Partial<Record<keyof CacheFiles, string>> = {};
    for (const which of ['key', 'chain'] as const) {
      const file = files[which];
      let stats: Stats;
      try {
        stats = lstatSync(file);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        return err({ file, reason: `cannot stat it: ${(e as Error).message}` });
      }
      const why = unsafe(stats);
      if (why) return err({ file, reason: why });
      try {
        texts[which] = readFileSync(file, 'utf8');
      } catch (e) {
        return err({ file, reason: `cannot read it: ${(e as Error).message}` });
      }
    }
    if (texts.key === undefined && texts.chain === undefined) return ok(undefined);
    if (texts.key === undefined) return err({ file: files.key, reason: `it is missing while ${files.chain} exists` });
    if (texts.chain === undefined) return err({ file: files.chain, reason: `it is missing while ${files.key} exists` });
    return ok({ keyPem: texts.key, chainPem: pemCertificates(texts.chain) });
  }

  /** Replaces both files (each written to a temporary file 0600, fsynced, renamed): key first, then chain. */
  write(identity: string, pair: CachedPair): Result<void, string> {
    const files = this.filesFor(identity);
    try {
      writeFileAtomic(files.key, pair.keyPem, 0o600);
      writeFileAtomic(files.chain, pair.chainPem.map((pem) => `${pem.trim()}\n`).join(''), 0o600);
    } catch (e) {
      return err((e as Error).message);
    }
    return ok(undefined);
  }

  /** Removes both files; absent ones are fine. */
  remove(identity: string): Result<void, string> {
    const failures: string[] = [];
    for (const file of Object.values(this.filesFor(identity))) {
      try {
        unlinkSync(file);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') failures.push(`cannot remove ${file}: ${fsAdvice(e)}`);
      }
    }
    return failures.length ? err(failures.join('; ')) : ok(undefined);
  }
}
