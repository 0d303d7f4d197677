// Path normalization (agent/http/path-normalize.ts): Envoy's normalize_path vectors
// (test/common/http/path_utility_test.cc), the policy bypasses it closes, the modes, the target forms.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canonicalPath, normalizeTarget, type PathNormalization } from '../../agent/http/path-normalize';

const base = (p: string): string => {
  const r = canonicalPath(p);
  assert.ok(r.ok, `${p}: ${r.ok ? '' : r.error}`);
  return r.value;
};
const target = (t: string, mode: PathNormalization = 'BASE', method = 'GET'): string => {
  const r = normalizeTarget(t, method, mode);
  assert.ok(r.ok, `${t}: ${r.ok ? '' : r.error}`);
  return r.value.target;
};

test('Envoy normalize_path vectors: dot segments, backslashes, escapes kept or decoded', () => {
  const pairs: Array<[string, string]> = [
    ['/xyz', '/xyz'], ['/x/y/z', '/x/y/z'], ['/A/B/C', '/A/B/C'],
    ['/a/b/../c', '/a/c'], ['/a/b/./c', '/a/b/c'], ['/a/b/../../../../c', '/c'], ['/a/..\\c', '/c'],
    ['/%c0%af', '/%c0%af'], ['/%5c%25', '/%5c%25'], ['/a/b/%2E%2E/c', '/a/c'], ['/a/b/%2e%2e/c', '/a/c'],
    ['/a/b/%2E./c', '/a/c'], ['/a/b/%2E/c', '/a/b/c'], ['/../a/b', '/a/b'], ['/./a/b', '/a/b'], ['/a/%2F%2f/c', '/a/%2F%2f/c'],
  ];
  for (const [input, want] of pairs) assert.equal(base(input), want, input);
  for (const bad of ['/xyz/.%00../abc', '/xyz/%00.%00./abc', '/xyz/AAAAA%%0000/abc', '/a\u0000b']) {
    const r = canonicalPath(bad);
    assert.equal(r.ok, false, bad);
  }
});

test('the ways around a path rule that BASE closes all read as the path the rule names', () => {
  for (const sneaky of ['/./admin/x', '/a/../admin/x', '/%61dmin/x', '/%61%64%6D%69%6E/x', '/admin\\x', '/x\\..\\admin\\x', '/admin/./x', '/%2e/admin/x', '/admin/%2E%2e/admin/x', '/.%2E/admin/x']) {
    assert.equal(base(sneaky), '/admin/x', sneaky);
  }
  // A target starting with a backslash is not origin form: refused, not read as a path.
  assert.equal(normalizeTarget('\\admin\\x', 'GET', 'BASE').ok, false);
});

test('dots that are not segments stay; characters that may not be raw are escaped; the rest passes', () => {
  assert.equal(base('/a/.b/..c/c.'), '/a/.b/..c/c.');
  assert.equal(base('/a/b/.'), '/a/b/');
  assert.equal(base('/a/b/..'), '/a/');
  assert.equal(base('/a b"<>`{|}#'), '/a%20b%22%3C%3E%60%7B%7C%7D%23');
  assert.equal(base('/\u00e9'), '/%E9'); // a Latin-1 byte as Node hands header bytes
  assert.equal(base('/\u20ac'), '/%E2%82%AC');
  assert.equal(base('/\ud83d\ude00'), '/%F0%9F%98%80');
  assert.equal(base("/a-b_c~d!$&'()*+,;=:@"), "/a-b_c~d!$&'()*+,;=:@");
  assert.equal(base('/%7e%2d%5F'), '/~-_');
  assert.equal(base('/%zz/%4'), '/%zz/%4'); // not escapes: as sent
});

test('an escape revealed by decoding another gets its % escaped, so a second decoding cannot read it', () => {
  assert.equal(base('/%%30%30'), '/%2500');
  assert.equal(base('/%%300'), '/%2500');
  assert.equal(base('/%3%30'), '/%2530');
  assert.equal(base('/%%41'), '/%A');
});

test('the query is never touched, in any mode', () => {
  for (const mode of ['BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'] as const) {
    assert.equal(target('/a/./b//c?x=/../y//z&%61=%2F', mode), mode === 'BASE' ? '/a/b//c?x=/../y//z&%61=%2F' : '/a/b/c?x=/../y//z&%61=%2F');
  }
  assert.equal(target('/a?', 'BASE'), '/a?');
});

test('modes: NONE keeps the path, MERGE_SLASHES merges, DECODE_AND_MERGE_SLASHES decodes escaped slashes first', () => {
  assert.equal(target('/./a//b/%2e%2e/%2Fc', 'NONE'), '/./a//b/%2e%2e/%2Fc');
  assert.equal(target('//a//b/../c', 'BASE'), '//a//c');
  assert.equal(target('//a//b/../c', 'MERGE_SLASHES'), '/a/c');
  assert.equal(target('/a/b/c//', 'MERGE_SLASHES'), '/a/b/c/');
  assert.equal(target('/admin%2Fx', 'MERGE_SLASHES'), '/admin%2Fx');
  assert.equal(target('/admin%2Fx', 'DECODE_AND_MERGE_SLASHES'), '/admin/x');
  assert.equal(target('/x%5c..%5cadmin%2f%2Fy', 'DECODE_AND_MERGE_SLASHES'), '/admin/y');
});

test('target forms: absolute keeps scheme and authority, names the host and is matched by its origin form; * for OPTIONS; CONNECT as sent; others refused', () => {
  const abs = normalizeTarget('http://api.shop:8080/a/../admin?q=1', 'GET', 'BASE');
  assert.deepEqual(abs, { ok: true, value: { target: 'http://api.shop:8080/admin?q=1', path: '/admin?q=1', authority: 'api.shop:8080' } });
  assert.deepEqual(normalizeTarget('http://[fd00::1]:80', 'GET', 'BASE'), { ok: true, value: { target: 'http://[fd00::1]:80/', path: '/', authority: '[fd00::1]:80' } });
  assert.deepEqual(normalizeTarget('*', 'OPTIONS', 'BASE'), { ok: true, value: { target: '*', path: '*' } });
  assert.deepEqual(normalizeTarget('db.shop:5432', 'CONNECT', 'BASE'), { ok: true, value: { target: 'db.shop:5432', path: 'db.shop:5432' } });
  for (const [t, method] of [['*', 'GET'], ['admin', 'GET'], ['http://user@h/', 'GET'], ['http://h\\admin', 'GET'], ['http:///x', 'GET'], ['', 'GET']] as const) {
    const r = normalizeTarget(t, method, 'BASE');
    assert.equal(r.ok, false, `${method} ${t}`);
  }
});

test('normalizing twice changes nothing, and no dot segment, backslash or decodable unreserved escape is left (random paths)', () => {
  const alphabet = ['/', '/', '.', '.', '%', '2', 'e', 'E', 'f', 'F', '5', 'c', '\\', 'a', '0', '3', '4', '1', '%2e', '%2F', '%5c', '%41', '%%', '?', ' ', '~', '\u00ff'];
  let seed = 12345;
  const rand = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
  for (let k = 0; k < 20_000; k++) {
    let p = '/';
    for (let n = rand(14); n > 0; n--) p += alphabet[rand(alphabet.length)];
    for (const mode of ['BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'] as const) {
      const once = normalizeTarget(p, 'GET', mode);
      if (!once.ok) continue;
      const twice = normalizeTarget(once.value.target, 'GET', mode);
      assert.ok(twice.ok, `${mode} ${JSON.stringify(p)}`);
      assert.equal(twice.value.target, once.value.target, `${mode} ${JSON.stringify(p)} -> ${once.value.target}`);
      const path = once.value.target.split('?')[0]!;
      assert.doesNotMatch(path, /\/\.\.?(\/|$)|\\|%(2e|2E|[46][1-9a-fA-F]|[57][0-9aA]|3[0-9])/, `${mode} ${JSON.stringify(p)} -> ${path}`);
    }
  }
});
