/**
 * The on-disk cache of workload keys and certificates (agent/identity/cert-cache.ts) and its use
 * by the IdentityManager across a restart: real keys, real CSRs, certificates signed by the real CA
 * (agent/controlplane/ca.ts) on a temporary data directory.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { CertificateAuthority } from '../../agent/controlplane/ca';
import { readCsr } from '../../agent/controlplane/csr';
import { CertCache, IDENTITIES_DIR, judgeCached, type CachedPair } from '../../agent/identity/cert-cache';
import { generateWorkloadKey } from '../../agent/identity/keys';
import { IdentityManager, type CertificateRequester } from '../../agent/identity/manager';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
const HOUR = 3_600_000;

const scratch = mkdtempSync(join(tmpdir(), 'weft-cert-cache-test-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
let dirs = 0;
const freshDir = () => join(scratch, `d${++dirs}`);

let ca: CertificateAuthority;
/** Another CA with a root of its own: what it signs chains to nothing the agent trusts. */
let strangerCa: CertificateAuthority;

before(async () => {
  for (const [name, set] of [['ca', (c: CertificateAuthority) => { ca = c; }], ['stranger', (c: CertificateAuthority) => { strangerCa = c; }]] as const) {
    const loaded = await CertificateAuthority.loadOrCreate({ dataDir: join(scratch, name), trustDomain: 'cluster.local' });
    if (!loaded.ok) throw new Error(loaded.error);
    set(loaded.value);
  }
});

/** The real CA signing whatever identity the CSR names, counting requests. */
function signer(by: () => CertificateAuthority = () => ca): { request: CertificateRequester; calls: () => number } {
  let calls = 0;
  return {
    request: async (csrPem, validitySeconds) => {
      calls += 1;
      const csr = await readCsr(csrPem);
      if (!csr.ok) throw new Error(csr.error);
      const chain = await by().signWorkloadCsr(csrPem, { identity: csr.value.uris[0]!, ttlSeconds: validitySeconds });
      if (!chain.ok) throw new Error(chain.error);
      return chain.value;
    },
    calls: () => calls,
  };
}

/** A pair as the agent would hold it: a key made here, signed by `authority` for `identity`. */
async function issuedPair(identity: string, authority = ca, ttlSeconds = 3600): Promise<CachedPair> {
  const { keyPem, csrPem } = await generateWorkloadKey(identity);
  const chain = await authority.signWorkloadCsr(csrPem, { identity, ttlSeconds });
  if (!chain.ok) throw new Error(chain.error);
  return { keyPem, chainPem: chain.value };
}

interface LogLine { level: number; msg: string; identity?: string; file?: string; reason?: string }

function managerOn(t: { after(fn: () => void): void }, dataDir: string, request: CertificateRequester, options: { now?: () => Date; trustBundle?: () => string; dropGraceMs?: number } = {}) {
  const lines: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => { lines.push(JSON.parse(line) as LogLine); } });
  const manager = new IdentityManager({ request, validitySeconds: 3600, log, ...(options.now ? { now: options.now } : {}),
    ...(options.dropGraceMs === undefined ? {} : { dropGraceMs: options.dropGraceMs }),
    cache: { dataDir, trustBundle: options.trustBundle ?? (() => ca.trustBundlePem()) } });
  t.after(() => manager.close());
  return { manager, lines };
}

const mode = (path: string) => statSync(path).mode & 0o777;
const openCache = (dataDir: string) => {
  const opened = CertCache.open(dataDir);
  assert.ok(opened.ok, opened.ok ? '' : opened.error);
  return opened.value;
};

test('round trip: issued once, written 0600 in a 0700 directory, served after a restart without a request', async (t) => {
  const dataDir = freshDir();
  const first = signer();
  const a = managerOn(t, dataDir, first.request);
  a.manager.setWanted([WEB]);
  const issued = await a.manager.whenReady(WEB, 5000);
  a.manager.close();
  assert.equal(first.calls(), 1);

  const files = openCache(dataDir).filesFor(WEB);
  assert.equal(mode(join(dataDir, IDENTITIES_DIR)), 0o700);
  assert.equal(mode(files.key), 0o600);
  assert.equal(mode(files.chain), 0o600);
  assert.match(files.key, /\/identities\/[0-9a-f]{32}\.key\.pem$/, 'the name is a hash, not the SPIFFE ID');

  const second = signer();
  const b = managerOn(t, dataDir, second.request);
  b.manager.setWanted([WEB]);
  const served = b.manager.get(WEB);
  assert.ok(served, 'served at once from the cache');
  assert.equal(served.keyPem, issued.keyPem);
  assert.deepEqual(served.chainPem.map((p) => p.trim()), issued.chainPem.map((p) => p.trim()));
  assert.equal(served.notAfter.getTime(), issued.notAfter.getTime());
  assert.equal(second.calls(), 0, 'no certificate requested');
  assert.ok(b.lines.some((l) => l.msg === 'certificate loaded from the on-disk cache' && l.identity === WEB));
  assert.ok(!b.lines.some((l) => l.level >= 40), `no warning: ${JSON.stringify(b.lines)}`);
  // Renewal stays where it would have been: 40-60 % of the lifetime counted from notBefore.
  const next = b.manager.status()[0]!.nextAttempt!.getTime();
  const life = served.notAfter.getTime() - served.notBefore.getTime();
  assert.ok(next >= served.notBefore.getTime() + 0.39 * life && next <= served.notBefore.getTime() + 0.61 * life, `next renewal at ${new Date(next).toISOString()}`);
});

test('atomic write: only the two files remain, also after a renewal replaced them', async () => {
  const dataDir = freshDir();
  const cache = openCache(dataDir);
  const one = await issuedPair(WEB);
  const two = await issuedPair(WEB);
  assert.ok(cache.write(WEB, one).ok);
  assert.ok(cache.write(WEB, two).ok);
  const files = cache.filesFor(WEB);
  assert.deepEqual(readdirSync(cache.dir).sort(), [files.chain, files.key].map((f) => f.slice(cache.dir.length + 1)).sort());
  const read = cache.read(WEB);
  assert.ok(read.ok && read.value);
  assert.equal(read.value.keyPem, two.keyPem);
  assert.equal(read.value.chainPem.length, 2, 'leaf and root');
});

test('judgeCached accepts a fresh pair of the real CA and refuses each kind of bad content, saying why', async () => {
  const now = new Date();
  const bundle = ca.trustBundlePem();
  const web = await issuedPair(WEB);
  const api = await issuedPair(API);
  const stranger = await issuedPair(WEB, strangerCa);
  const good = judgeCached(WEB, web, bundle, now);
  assert.ok(good.ok, JSON.stringify(good));

  const cases: Array<[string, CachedPair, string, Date, 'key' | 'chain', RegExp]> = [
    ['corrupt key PEM', { ...web, keyPem: '-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n' }, bundle, now, 'key', /does not parse as a PEM private key/],
    ['corrupt certificate PEM', { ...web, chainPem: ['-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'] }, bundle, now, 'chain', /does not parse as PEM certificates/],
    ['no certificate', { ...web, chainPem: [] }, bundle, now, 'chain', /holds no PEM certificate/],
    ['mismatched key', { ...web, keyPem: api.keyPem }, bundle, now, 'key', /not the key of the cached certificate/],
    ['another identity', api, bundle, now, 'chain', new RegExp(`for \\[${API}\\], not ${WEB}`)],
    ['unknown root', stranger, bundle, now, 'chain', /does not chain to a root the agent trusts now/],
    ['expired', web, bundle, new Date(now.getTime() + 2 * HOUR), 'chain', /expired at/],
    ['due for renewal', web, bundle, new Date(now.getTime() + 0.45 * HOUR), 'chain', /due for renewal at/],
  ];
  for (const [name, pair, roots, at, which, reason] of cases) {
    const judged = judgeCached(WEB, pair, roots, at);
    assert.ok(!judged.ok, `${name}: refused`);
    assert.equal(judged.error.which, which, name);
    assert.match(judged.error.reason, reason, name);
  }
  // The stranger's own bundle accepts its pair: the refusal above is about the roots, nothing else.
  assert.ok(judgeCached(WEB, stranger, strangerCa.trustBundlePem(), now).ok);
});

/**
 * Each bad state on disk, found by a restarted manager: logged with the file and why, both files
 * removed, a new certificate requested and served (and cached in their place). Never thrown, never used.
 */
test('bad cache content: logged with the file, removed, requested again', async (t) => {
  const api = await issuedPair(API);
  const stranger = await issuedPair(WEB, strangerCa);
  type Setup = (cache: CertCache, files: { key: string; chain: string }) => Promise<void> | void;
  const cases: Array<[string, Setup, 'key' | 'chain', RegExp, { now?: () => Date }?]> = [
    ['corrupt chain PEM', async (c, f) => { c.write(WEB, await issuedPair(WEB)); writeFileSync(f.chain, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'); }, 'chain', /does not parse/],
    ['garbage key', async (c, f) => { c.write(WEB, await issuedPair(WEB)); writeFileSync(f.key, 'garbage'); }, 'key', /does not parse/],
    ['key readable by group', async (c, f) => { c.write(WEB, await issuedPair(WEB)); chmodSync(f.key, 0o640); }, 'key', /mode is 0640: group or other may read/],
    ['chain readable by others', async (c, f) => { c.write(WEB, await issuedPair(WEB)); chmodSync(f.chain, 0o604); }, 'chain', /mode is 0604/],
    ['key owned by another user', async (c, f) => { c.write(WEB, await issuedPair(WEB)); chownSync(f.key, 4242, 4242); }, 'key', /owned by uid 4242/],
    ['mismatched key', async (c) => { const web = await issuedPair(WEB); c.write(WEB, { ...web, keyPem: api.keyPem }); }, 'key', /not the key of the cached certificate/],
    ['another identity under this name', (c) => { c.write(WEB, api); }, 'chain', /not spiffe:\/\/cluster.local\/ns\/shop\/sa\/web/],
    ['unknown root', (c) => { c.write(WEB, stranger); }, 'chain', /does not chain to a root the agent trusts now/],
    ['key without chain', async (c, f) => { c.write(WEB, await issuedPair(WEB)); rmSync(f.chain); }, 'chain', /missing while/],
    ['expired', async (c) => { c.write(WEB, await issuedPair(WEB, ca, 60)); }, 'chain', /expired at/, { now: () => new Date(Date.now() + 2 * 60_000) }],
  ];
  for (const [name, setup, which, reason, options] of cases) {
    const dataDir = freshDir();
    const cache = openCache(dataDir);
    const files = cache.filesFor(WEB);
    await setup(cache, files);
    const counted = signer();
    const { manager, lines } = managerOn(t, dataDir, counted.request, options);
    assert.doesNotThrow(() => manager.setWanted([WEB]), name);
    assert.equal(manager.get(WEB), undefined, `${name}: the cached pair is not served`);
    const warning = lines.find((l) => l.level === 40 && l.msg.startsWith('cached key or certificate refused'));
    assert.ok(warning, `${name}: a warning: ${JSON.stringify(lines)}`);
    assert.equal(warning.file, files[which], `${name}: the warning names the file`);
    assert.match(warning.reason ?? '', reason, name);
    assert.ok(!existsSync(files.key) && !existsSync(files.chain), `${name}: both refused files are gone`);
    if (options?.now) { manager.close(); continue; } // a fake clock ahead of the CA's: the new certificate would look expired
    const fresh = await manager.whenReady(WEB, 5000);
    assert.equal(counted.calls(), 1, `${name}: requested again`);
    const reread = cache.read(WEB);
    assert.ok(reread.ok && reread.value && reread.value.keyPem === fresh.keyPem, `${name}: the new pair replaced it on disk`);
    assert.equal(mode(files.key), 0o600);
    manager.close();
  }
});

test('a cached certificate due for renewal is not used: a new one is requested', async (t) => {
  const dataDir = freshDir();
  const cache = openCache(dataDir);
  const old = await issuedPair(WEB);
  cache.write(WEB, old);
  const counted = signer();
  // 45 % into a one-hour lifetime: past the earliest renewal (40 %), still far from expiry.
  const { manager, lines } = managerOn(t, dataDir, counted.request, { now: () => new Date(Date.now() + 0.45 * HOUR) });
  manager.setWanted([WEB]);
  assert.equal(manager.get(WEB), undefined);
  const fresh = await manager.whenReady(WEB, 5000);
  assert.notEqual(fresh.keyPem, old.keyPem);
  assert.equal(counted.calls(), 1);
  assert.ok(lines.some((l) => l.level === 30 && l.msg === 'cached certificate due for renewal: requesting a new one' && /due for renewal at/.test(l.reason ?? '')));
  assert.ok(!lines.some((l) => l.level >= 40), 'a sound certificate due for renewal is no warning');
  const reread = openCache(dataDir).read(WEB);
  assert.ok(reread.ok && reread.value?.keyPem === fresh.keyPem, 'the new pair replaced it on disk');
});

test('a dropped identity takes its files with it; the others stay', async (t) => {
  const dataDir = freshDir();
  const { manager } = managerOn(t, dataDir, signer().request, { dropGraceMs: 100 });
  manager.setWanted([WEB, API]);
  await Promise.all([manager.whenReady(WEB, 5000), manager.whenReady(API, 5000)]);
  const cache = openCache(dataDir);
  const web = cache.filesFor(WEB);
  const api = cache.filesFor(API);
  for (const f of [web.key, web.chain, api.key, api.chain]) assert.ok(existsSync(f), f);
  manager.setWanted([API]);
  assert.ok(existsSync(web.key), 'kept while its certificate is still served (the drop grace)');
  for (let i = 0; i < 100 && existsSync(web.key); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(!existsSync(web.key) && !existsSync(web.chain), 'the dropped identity\'s files are removed');
  assert.ok(existsSync(api.key) && existsSync(api.chain));
  manager.close();
  assert.ok(existsSync(api.key), 'closing (a restart) keeps the cache');
});

test('a data directory that cannot hold the cache: a warning, certificates still issued in memory', async (t) => {
  const blocked = join(freshDir());
  writeFileSync(blocked, 'a file where the directory should be');
  const counted = signer();
  const { manager, lines } = managerOn(t, blocked, counted.request);
  manager.setWanted([WEB]);
  await manager.whenReady(WEB, 5000);
  assert.ok(lines.some((l) => l.level === 40 && l.msg.startsWith('certificates are not cached on disk')), JSON.stringify(lines));
});

test('file names come from a hash: an identity cannot name a path', () => {
  const cache = openCache(freshDir());
  const files = cache.filesFor('spiffe://cluster.local/ns/../../../etc/sa/passwd');
  assert.ok(files.key.startsWith(`${cache.dir}/`) && !files.key.slice(cache.dir.length + 1).includes('/'));
  assert.notEqual(cache.filesFor(WEB).key, cache.filesFor(API).key);
});
