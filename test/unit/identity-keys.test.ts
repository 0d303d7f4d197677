import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { generateWorkloadKey } from '../../agent/identity/keys';

test('a workload key is ECDSA P-256 and its CSR asks for exactly the identity, signed by that key', async () => {
  const identity = 'spiffe://cluster.local/ns/shop/sa/web';
  const { keyPem, csrPem } = await generateWorkloadKey(identity);
  const key = createPrivateKey(keyPem);
  assert.equal(key.asymmetricKeyType, 'ec');
  assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  const csr = new x509.Pkcs10CertificateRequest(csrPem);
  assert.ok(await csr.verify());
  const sans = [...csr.extensions].filter((extension) => extension instanceof x509.SubjectAlternativeNameExtension);
  assert.deepEqual(sans.map((san) => [san.critical, san.names.items.map((name) => `${name.type}:${name.value}`)]), [[true, [`url:${identity}`]]]);
  const csrKey = createPublicKey({ key: Buffer.from(csr.publicKey.rawData), format: 'der', type: 'spki' });
  assert.ok(csrKey.equals(createPublicKey(key)));
});
