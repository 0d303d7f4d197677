import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

/**
 * The certificates and keys a test Kubernetes control plane needs, made in-process: one CA that
 * signs the API server's serving certificate and the client certificates (the API server trusts
 * it as --client-ca-file, so a certificate's CN is the user and its O entries the groups), and the
 * ServiceAccount token signing key. ECDSA P-256 throughout: fast to generate, accepted by Go's TLS
 * and by the API server's token signer (ES256).
 */

const ALG: webcrypto.EcKeyGenParams & webcrypto.EcdsaParams = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const DAY_MS = 86_400_000;

export interface Pem {
  cert: string;
  key: string;
}

export interface KubePki {
  ca: Pem;
  serving: Pem;
  /** CN=weft-test-admin, O=system:masters. */
  admin: Pem;
  /** CN=system:kube-controller-manager: the user the default RBAC bindings give the controller manager's rights. */
  controllerManager: Pem;
  /** ServiceAccount token signing key (PKCS#8) and its public half (SPKI). */
  serviceAccount: { key: string; pub: string };
  /** Another client certificate from the same CA (a user with these groups). */
  client(user: string, groups: string[]): Promise<Pem>;
}

function pem(label: string, der: ArrayBuffer): string {
  const b64 = Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n');
  return `-----BEGIN ${label}-----\n${b64}-----END ${label}-----\n`;
}

async function newKeys(): Promise<webcrypto.CryptoKeyPair> {
  return webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']) as Promise<webcrypto.CryptoKeyPair>;
}

async function keyPem(keys: webcrypto.CryptoKeyPair): Promise<string> {
  return pem('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
}

export async function createKubePki(serverHosts: { dns: string[]; ips: string[] }): Promise<KubePki> {
  const now = Date.now();
  const notBefore = new Date(now - 60_000);
  const notAfter = new Date(now + 7 * DAY_MS);
  const caKeys = await newKeys();
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=weft-test-kubernetes-ca',
    notBefore,
    notAfter,
    keys: caKeys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const authorityKeyId = new x509.AuthorityKeyIdentifierExtension((await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey)).keyId);

  const leaf = async (subject: string, usage: 'server' | 'client', sans: x509.JsonGeneralName[] = []): Promise<Pem> => {
    const keys = await newKeys();
    const cert = await x509.X509CertificateGenerator.create({
      subject,
      issuer: caCert.subject,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: caKeys.privateKey,
      signingAlgorithm: ALG,
      serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(12))).toString('hex').replace(/^[89a-f]/, '1'),
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        new x509.ExtendedKeyUsageExtension([usage === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth]),
        authorityKeyId,
        ...(sans.length > 0 ? [new x509.SubjectAlternativeNameExtension(sans)] : []),
      ],
    });
    return { cert: cert.toString('pem') + '\n', key: await keyPem(keys) };
  };
  /** Subject DN with one O per group; escaping is not needed for the names tests use. */
  const subjectOf = (user: string, groups: string[]): string => [...groups.map((g) => `O=${g}`), `CN=${user}`].join(', ');

  const saKeys = await newKeys();
  return {
    ca: { cert: caCert.toString('pem') + '\n', key: await keyPem(caKeys) },
    serving: await leaf('CN=kube-apiserver', 'server', [
      ...serverHosts.dns.map((value) => ({ type: 'dns' as const, value })),
      ...serverHosts.ips.map((value) => ({ type: 'ip' as const, value })),
    ]),
    admin: await leaf(subjectOf('weft-test-admin', ['system:masters']), 'client'),
    controllerManager: await leaf('CN=system:kube-controller-manager', 'client'),
    serviceAccount: {
      key: await keyPem(saKeys),
      pub: pem('PUBLIC KEY', await webcrypto.subtle.exportKey('spki', saKeys.publicKey)),
    },
    client: (user, groups) => leaf(subjectOf(user, groups), 'client'),
  };
}
