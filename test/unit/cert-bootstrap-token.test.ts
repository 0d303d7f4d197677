import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metadata } from '@grpc/grpc-js';
import { BootstrapTokenAuthenticator, loadOrCreateBootstrapToken } from '../../agent/controlplane/bootstrap-token';

function metadata(entries: Record<string, string>): Metadata {
  const m = new Metadata();
  for (const [key, value] of Object.entries(entries)) m.set(key, value);
  return m;
}

test('the bootstrap token is 32 random bytes in hex, created 0600, and kept across restarts', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-token-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const token = loadOrCreateBootstrapToken(dir);
  assert.match(token, /^[0-9a-f]{64}$/);
  assert.equal(statSync(join(dir, 'bootstrap.token')).mode & 0o777, 0o600);
  assert.equal(readFileSync(join(dir, 'bootstrap.token'), 'utf8').trim(), token);
  assert.equal(loadOrCreateBootstrapToken(dir), token);
});

test('the bootstrap authenticator trusts the node the caller names once the token matches', async () => {
  const auth = new BootstrapTokenAuthenticator('s3cret');
  assert.deepEqual(await auth.authenticate(metadata({ authorization: 'Bearer s3cret', 'weft-node': 'node-a' })), { ok: true, value: { node: 'node-a', subject: 'bootstrap-token' } });
  const refused: Array<[Record<string, string>, RegExp]> = [
    [{ 'weft-node': 'node-a' }, /no "authorization: Bearer <token>" metadata/],
    [{ authorization: 'Basic s3cret', 'weft-node': 'node-a' }, /not "Bearer <token>"/],
    [{ authorization: 'Bearer s3cre', 'weft-node': 'node-a' }, /does not match/],
    [{ authorization: 'Bearer s3cret' }, /no "weft-node" metadata/],
  ];
  for (const [entries, reason] of refused) {
    const result = await auth.authenticate(metadata(entries));
    assert.equal(result.ok, false, JSON.stringify(entries));
    if (!result.ok) assert.match(result.error, reason);
  }
});
