import * as x509 from '@peculiar/x509';
import { err, ok, type Result } from '../core/result';
import { operationalLogger } from '../core/log';
import { generateKeyPair, privateKeyPem } from '../identity/keys';
import { parseSpiffeId } from '../identity/spiffe';
import { issueLeafCertificate, type Issuer } from './ca-certs';
import { generateRoot, loadOperatorRoot, loadOrCreateStoredRoot, pemOf, pemsOf, readIssuer } from './ca-roots';
import { DataDirRootStore, type RootStore, type TrustBundlePublisher } from './ca-store';
import { readCsr } from './csr';
import { ensureDataDir } from './data-dir';

export const DEFAULT_WORKLOAD_TTL_SECONDS = 86_400;

export interface CaOptions {
  /**
   * Holds `ca-key.pem` (0600, the signing key) and `ca.pem` (the trust bundle: every active root),
   * unless `rootStore` or `operatorRoot` says where the root is.
   */
  dataDir: string;
  trustDomain: string;
  /** Where the root is kept instead of the data directory (Kubernetes: a Secret, ca-store-secret.ts). */
  rootStore?: RootStore;
  /**
   * A root the operator provides instead of a generated one. The certificate file may hold more
   * roots after the first (the signing one): they stay trusted, which is how the operator rotates.
   * `rootStore` is then not used; `ca.pem` in the data directory receives the bundle.
   */
  operatorRoot?: { certPath: string; keyPath: string };
  /**
   * Where agents read the trust bundle (Kubernetes: a ConfigMap). Published at every load, which
   * fails when it cannot be, and after every change the root store has accepted.
   */
  bundlePublisher?: TrustBundlePublisher;
  clock?: () => Date;
}

export interface ServingCertificate {
  keyPem: string;
  /** Leaf then signing root, PEM. */
  certChainPem: string;
}

const log = operationalLogger('ca');

/**
 * The mesh's certificate authority: signs workload CSRs whose identity the caller was authorized
 * for, and keeps the trust bundle. Identity policy (who may ask for what) is not decided here.
 */
export class CertificateAuthority {
  private constructor(
    private readonly options: CaOptions,
    private readonly store: RootStore,
    private signing: Issuer,
    private roots: x509.X509Certificate[],
  ) {}

  static async loadOrCreate(options: CaOptions): Promise<Result<CertificateAuthority, string>> {
    ensureDataDir(options.dataDir);
    const { operatorRoot } = options;
    const store = operatorRoot || !options.rootStore ? new DataDirRootStore(options.dataDir) : options.rootStore;
    const loaded = operatorRoot ? await loadOperatorRoot({ ...options, operatorRoot }) : await loadOrCreateStoredRoot(store, options);
    if (!loaded.ok) return loaded;
    const ca = new CertificateAuthority(options, store, loaded.value.signing, loaded.value.roots);
    // Expired roots were dropped on load; the stored bundle follows (a no-op when nothing changed).
    const persisted = await store.write({ bundlePem: ca.trustBundlePem() });
    if (!persisted.ok) return persisted;
    const published = await ca.publishTrustBundle();
    if (!published.ok) return published;
    log.info({ trustDomain: options.trustDomain, store: operatorRoot ? `operator files ${operatorRoot.certPath}` : store.location, signingRoot: ca.signing.cert.subject, roots: ca.roots.length }, 'certificate authority ready');
    return ok(ca);
  }

  get trustDomain(): string {
    return this.options.trustDomain;
  }

  /** PEM concatenation of every active root, the signing root first. */
  trustBundlePem(): string {
    return pemsOf(this.roots);
  }

  /**
   * Publishes the current bundle where agents read it (`bundlePublisher`); without one, nothing to
   * do. Rotation calls it; call it again after a rotation step reported that publishing failed.
   */
  async publishTrustBundle(): Promise<Result<void, string>> {
    return this.options.bundlePublisher?.publish(this.trustBundlePem()) ?? ok(undefined);
  }

  /**
   * Signs a workload CSR for `identity` (the caller has been authorized for it). The CSR must carry
   * a valid signature and, if it names URI SANs, exactly `identity`. Returns [leaf, root] as PEM.
   */
  async signWorkloadCsr(csrPem: string, { identity, ttlSeconds = DEFAULT_WORKLOAD_TTL_SECONDS }: { identity: string; ttlSeconds?: number }): Promise<Result<string[], string>> {
    if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds <= 0) return err(`certificate lifetime must be a positive number of seconds, got ${ttlSeconds}`);
    const parsed = parseSpiffeId(identity);
    if (!parsed.ok) return parsed;
    if (parsed.value.trustDomain !== this.trustDomain) return err(`identity ${identity} is outside this CA's trust domain ${this.trustDomain}`);
    const csr = await readCsr(csrPem);
    if (!csr.ok) return csr;
    if (csr.value.uris.length > 0 && (csr.value.uris.length !== 1 || csr.value.uris[0] !== identity)) {
      return err(`CSR asks for ${csr.value.uris.join(', ')} but the certificate would be for ${identity}`);
    }
    const leaf = await issueLeafCertificate(this.signing, {
      publicKey: csr.value.publicKey,
      sans: [{ type: 'url', value: identity }],
      extendedKeyUsages: [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
      ttlSeconds,
    }, this.now());
    return ok([pemOf(leaf), pemOf(this.signing.cert)]);
  }

  /** The control plane's own TLS certificate for its gRPC listener (new key each call). */
  async issueServingCertificate({ dnsNames, ipAddresses, ttlSeconds }: { dnsNames: string[]; ipAddresses: string[]; ttlSeconds: number }): Promise<ServingCertificate> {
    const keys = await generateKeyPair();
    const leaf = await issueLeafCertificate(this.signing, {
      publicKey: await x509.PublicKey.create(keys.publicKey),
      sans: [...dnsNames.map((value) => ({ type: 'dns' as const, value })), ...ipAddresses.map((value) => ({ type: 'ip' as const, value }))],
      extendedKeyUsages: [x509.ExtendedKeyUsage.serverAuth],
      ttlSeconds,
    }, this.now());
    return { keyPem: await privateKeyPem(keys.privateKey), certChainPem: pemsOf([leaf, this.signing.cert]) };
  }

  /**
   * Rotation, step one: a new signing root (generated, or the operator's), while the previous roots
   * stay in the trust bundle so certificates they issued keep verifying until they expire. The
   * bundle is published once the store holds it; agents that have not yet read it refuse what the
   * new root signs until they do (in Kubernetes, when the kubelet refreshes their mounted ConfigMap).
   */
  async addRoot(provided?: { certPem: string; keyPem: string }): Promise<Result<void, string>> {
    if (this.options.operatorRoot) return err('the root comes from the operator\'s files: rotate by replacing them (new root first, old roots after it)');
    const root = provided ? await readIssuer(provided.certPem, provided.keyPem, 'new root', this.now()) : await generateRoot(this.options.trustDomain, this.now());
    if (!root.ok) return root;
    const roots = [root.value.issuer.cert, ...this.roots];
    // Signing switches only once the store holds the new root: a refused write changes nothing.
    const written = await this.store.write({ bundlePem: pemsOf(roots), keyPem: root.value.keyPem });
    if (!written.ok) return err(`the new root was not added: ${written.error}`);
    this.roots = roots;
    this.signing = root.value.issuer;
    log.info({ store: this.store.location, signingRoot: this.signing.cert.subject, roots: this.roots.length }, 'added a root; it signs from now on, the older roots stay trusted');
    return this.published('the new root was added and signs from now on');
  }

  /**
   * Rotation, last step (once no workload holds a certificate from an older root): trust only the
   * signing root. The bundle served changes at once (the data directory is written before this
   * returns); if the store refuses the write, the older roots are trusted again and the error returned.
   */
  async retireOlderRoots(): Promise<Result<void, string>> {
    const previous = this.roots;
    this.roots = [this.signing.cert];
    const written = await this.store.write({ bundlePem: this.trustBundlePem() });
    if (!written.ok) {
      if (this.roots.length === 1 && this.roots[0] === this.signing.cert) this.roots = previous;
      return err(`the older roots stay trusted: ${written.error}`);
    }
    log.info({ store: this.store.location, retired: previous.length - 1, signingRoot: this.signing.cert.subject }, 'retired older roots from the trust bundle');
    return this.published('the older roots were retired');
  }

  /**
   * After the store accepted a change (it is the source of truth, and refuses a replica's stale
   * write): publish it. A failure leaves the change in force and says that agents have not seen it.
   */
  private async published(what: string): Promise<Result<void, string>> {
    const published = await this.publishTrustBundle();
    if (published.ok) return published;
    return err(`${what} in ${this.store.location}, but agents still read the previous bundle: ${published.error}. `
      + 'Fix that, then publish again (publishTrustBundle, or restart the control plane: it publishes at start)');
  }

  private now(): Date {
    return this.options.clock?.() ?? new Date();
  }
}
