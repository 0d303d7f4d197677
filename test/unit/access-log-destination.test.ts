import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { accessLogger } from '../../agent/core/log';

const lines = (path: string) => readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

/** Waits (bounded) until `path` holds something. */
async function written(path: string): Promise<void> {
  for (let i = 0; i < 400 && readFileSync(path, 'utf8') === ''; i++) await sleep(5);
}

test('access-log lines are gathered and written together after the batch delay, in order, each a whole JSON line', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-access-log-'));
  const path = join(dir, 'access.log');
  const fd = openSync(path, 'w');
  try {
    const log = accessLogger(fd, { maxDelayMs: 1 });
    const conn = log.child({ 'src.addr': '10.0.0.1:4711', direction: 'inbound' });
    conn.info({ method: 'GET', path: '/a', status: 200 }, 'request complete');
    conn.info({ method: 'GET', path: '/b', status: 403 }, 'request denied');
    log.info({ decision: 'allow', requests: 2 }, 'connection complete');
    assert.equal(readFileSync(path, 'utf8'), '', 'nothing is written while the batch waits');
    await written(path);
    const got = lines(path);
    assert.deepEqual(got.map((l) => [l.path, l.status, l.msg]), [['/a', 200, 'request complete'], ['/b', 403, 'request denied'], [undefined, undefined, 'connection complete']]);
    assert.equal(got[0]!['src.addr'], '10.0.0.1:4711', 'a child logger\'s bindings are on each of its lines');
    assert.equal(got[2]!['src.addr'], undefined);
    log.info({ path: '/c' }, 'later');
    for (let i = 0; i < 400 && lines(path).length < 4; i++) await sleep(5);
    assert.deepEqual(lines(path).map((l) => l.path), ['/a', '/b', undefined, '/c']);
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pending lines are written at once when they reach maxBytes, without waiting for the delay', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-access-log-'));
  const path = join(dir, 'access.log');
  const fd = openSync(path, 'w');
  try {
    const log = accessLogger(fd, { maxDelayMs: 3_600_000, maxBytes: 200 });
    log.info({ path: '/1' }, 'x');
    assert.equal(readFileSync(path, 'utf8'), '', 'one short line waits');
    for (let i = 2; i <= 10; i++) log.info({ path: `/${i}`, pad: 'p'.repeat(20) }, 'x');
    const got = lines(path).map((l) => l.path);
    assert.ok(got.length >= 3 && got.length < 10, `written in batches of about 200 characters: ${got.length} lines so far`);
    assert.deepEqual(got, Array.from({ length: got.length }, (_, i) => `/${i + 1}`), 'in order');
    log.flush();
    assert.deepEqual(lines(path).map((l) => l.path), Array.from({ length: 10 }, (_, i) => `/${i + 1}`), 'logger.flush() writes the rest');
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a bad batch setting is refused with the field named', () => {
  assert.throws(() => accessLogger(1, { maxBytes: 0 }), /maxBytes/);
});

test('lines still pending when the process exits are written', () => {
  const logModule = join(__dirname, '../../agent/core/log.js');
  const r = spawnSync(process.execPath, ['-e', `const log = require(${JSON.stringify(logModule)}).accessLogger(); log.info({ path: '/last' }, 'x'); process.exit(0);`], { encoding: 'utf8', timeout: 10_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.stdout.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { path: string }).path), ['/last']);
});

test('lines still pending on SIGTERM are written, and the process still ends by the signal', () => {
  const logModule = join(__dirname, '../../agent/core/log.js');
  const r = spawnSync(process.execPath, ['-e', `const log = require(${JSON.stringify(logModule)}).accessLogger(1, { maxDelayMs: 3600000 }); log.info({ path: '/term' }, 'x'); `
    + 'process.kill(process.pid, "SIGTERM"); setTimeout(() => undefined, 10000);'], { encoding: 'utf8', timeout: 10_000 });
  assert.equal(r.signal, 'SIGTERM', r.stderr);
  assert.deepEqual(r.stdout.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { path: string }).path), ['/term']);
});
