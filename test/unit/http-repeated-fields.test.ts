import { test } from 'node:test';
import assert from 'node:assert/strict';
import { repeatedFields } from '../../agent/http/headers';
import { withRepeatedFields } from '../../agent/http/http2';

test('repeatedFields lists only names sent more than once, values in order, case-insensitively', () => {
  assert.equal(repeatedFields(['Host', 'a', 'X-One', '1']), undefined);
  const r = repeatedFields(['X-Add', 'v1', 'host', 'a', 'x-add', 'v2', 'X-ADD', 'v3']);
  assert.deepEqual([...r!], [['x-add', ['v1', 'v2', 'v3']]]);
});

test('repeatedFields leaves pseudo-headers and cookies to their own rules', () => {
  assert.equal(repeatedFields([':path', '/', ':path', '/x', 'cookie', 'a=1', 'cookie', 'b=2', 'set-cookie', 'c', 'set-cookie', 'd']), undefined);
});

test('withRepeatedFields turns a field Node joined back into its separate values, the rest as it was', () => {
  const joined = { ':path': '/', 'x-header-add': 'header-val-1, add-appends-values', 'x-one': '1' };
  const raw = [':path', '/', 'x-header-add', 'header-val-1', 'x-one', '1', 'x-header-add', 'add-appends-values'];
  assert.deepEqual(withRepeatedFields(joined, raw), { ':path': '/', 'x-header-add': ['header-val-1', 'add-appends-values'], 'x-one': '1' });
  assert.equal(withRepeatedFields(joined, undefined), joined);
  assert.equal(withRepeatedFields({ a: '1' }, ['a', '1']).a, '1');
});
