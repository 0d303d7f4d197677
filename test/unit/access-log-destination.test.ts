import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { accessLogger } from '../../agent/core/log';

const lines = (path: string) => readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

test('access-log lines of one turn are written together when the turn ends, in order, each a whole JSON line', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-access-log-'));
  const path = join(dir, 'access.log');
  const fd = openSync(path, 'w');
  try {
    const log = accessLogger(fd);
    const conn = log.child({ 'src.addr': '10.0.0.1:4711', direction: 'inbound' });
    conn.info({ method: 'GET', path: '/a', status: 200 }, 'request complete');
    conn.info({ method: 'GET', path: '/b', status: 403 }, 'request denied');
    log.info({ decision: 'allow', requests: 2 }, 'connection complete');
    assert.equal(readFileSync(path, 'utf8'), '', 'nothing is written before the turn ends');
    await tick();
    const got = lines(path);
    assert.deepEqual(got.map((l) => [l.path, l.status, l.msg]), [['/a', 200, 'request complete'], ['/b', 403, 'request denied'], [undefined, undefined, 'connection complete']]);
    assert.equal(got[0]!['src.addr'], '10.0.0.1:4711', 'a child logger\'s bindings are on each of its lines');
    assert.equal(got[2]!['src.addr'], undefined);
    log.info({ path: '/c' }, 'later');
    await tick();
    assert.deepEqual(lines(path).map((l) => l.path), ['/a', '/b', undefined, '/c']);
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('lines still pending when the process exits are written', () => {
  const logModule = join(__dirname, '../../agent/core/log.js');
  const r = spawnSync(process.execPath, ['-e', `const log = require(${JSON.stringify(logModule)}).accessLogger(); log.info({ path: '/last' }, 'x'); process.exit(0);`], { encoding: 'utf8', timeout: 10_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.stdout.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { path: string }).path), ['/last']);
});
