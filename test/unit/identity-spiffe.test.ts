import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSpiffeId, spiffeId } from '../../agent/identity/spiffe';

test('spiffeId builds the contract shape and parses back', () => {
  const id = spiffeId('cluster.local', 'shop', 'web-v2');
  assert.equal(id, 'spiffe://cluster.local/ns/shop/sa/web-v2');
  assert.deepEqual(parseSpiffeId(id), { ok: true, value: { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'web-v2' } });
});

test('spiffeId refuses parts no valid ID can hold', () => {
  assert.throws(() => spiffeId('cluster.local', 'a/b', 'web'), TypeError);
  assert.throws(() => spiffeId('Cluster.Local', 'shop', 'web'), /trust domain/);
});

const refused: Array<[string, RegExp]> = [
  ['https://cluster.local/ns/a/sa/b', /must start with spiffe:\/\//],
  ['SPIFFE://cluster.local/ns/a/sa/b', /must start with spiffe:\/\//],
  ['spiffe://Cluster.local/ns/a/sa/b', /trust domain "Cluster.local"/],
  ['spiffe://cluster.local:443/ns/a/sa/b', /trust domain/],
  ['spiffe://user@cluster.local/ns/a/sa/b', /trust domain/],
  ['spiffe:///ns/a/sa/b', /trust domain ""/],
  ['spiffe://cluster.local', /path must be/],
  ['spiffe://cluster.local/', /path must be/],
  ['spiffe://cluster.local/ns/a', /path must be/],
  ['spiffe://cluster.local/ns/a/sa/b/', /path must be/],
  ['spiffe://cluster.local/ns/a/sa/b/c', /path must be/],
  ['spiffe://cluster.local/sa/b/ns/a', /path must be/],
  ['spiffe://cluster.local/ns//sa/b', /namespace is empty/],
  ['spiffe://cluster.local/ns/a/sa/', /service account is empty/],
  ['spiffe://cluster.local/ns/../sa/b', /namespace "\.\."/],
  ['spiffe://cluster.local/ns/a/sa/b%20c', /service account "b%20c"/],
  ['spiffe://cluster.local/ns/a/sa/b?x=1', /service account "b\?x=1"/],
  ['spiffe://cluster.local/ns/a/sa/b#frag', /service account "b#frag"/],
  ['spiffe://cluster.local/ns/a b/sa/b', /namespace "a b"/],
  [`spiffe://cluster.local/ns/a/sa/${'x'.repeat(2048)}`, /longer than 2048/],
];

for (const [uri, reason] of refused) {
  test(`parseSpiffeId refuses ${uri.slice(0, 60)}`, () => {
    const parsed = parseSpiffeId(uri);
    assert.equal(parsed.ok, false);
    if (!parsed.ok) assert.match(parsed.error, reason);
  });
}
