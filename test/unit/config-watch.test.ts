import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConfigError } from '../../agent/config/config-error';
import type { Snapshot } from '../../agent/config/objects';
import { watchConfig, type ConfigWatch } from '../../agent/config/watch';

const namespace = (name: string, mesh = 'enabled'): string =>
  `apiVersion: v1\nkind: Namespace\nmetadata: { name: ${name}, labels: { weft.dev/mesh: ${mesh} } }\n`;

/** Long enough for the 50 ms debounce and a slow CI machine; waits end as soon as the condition holds. */
const WAIT_MS = 3000;
/** How long "nothing happens" is watched for. */
const QUIET_MS = 400;

async function waitFor(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${WAIT_MS} ms waiting for ${what}`);
    await sleep(10);
  }
}

describe('watchConfig', () => {
  let dir: string;
  let file: string;
  let watcher: ConfigWatch | undefined;
  let snapshots: Snapshot[];
  let errors: (ConfigError[] | Error)[];

  const start = (): ConfigWatch => {
    watcher = watchConfig(file, (s) => snapshots.push(s), (e) => errors.push(e));
    return watcher;
  };
  const names = (s: Snapshot): string[] => s.namespaces.map((n) => n.name);

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'weft-config-watch-'));
    file = join(dir, 'mesh.yaml');
    writeFileSync(file, namespace('shop'));
    snapshots = [];
    errors = [];
  });

  afterEach(() => {
    watcher?.close();
    watcher = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('loads synchronously and refuses an invalid first load, listing every problem', () => {
    assert.deepEqual(names(start().current()), ['shop']);
    watcher?.close();
    writeFileSync(file, `${namespace('Bad')}---\nkind: Gadget\n`);
    assert.throws(() => start(), (e: Error) => {
      assert.match(e.message, new RegExp(`invalid config ${file}`));
      assert.match(e.message, /Namespace Bad: metadata.name: /);
      assert.match(e.message, /document 2: kind: unknown kind "Gadget"/);
      return true;
    });
    watcher = undefined;
    assert.throws(() => watchConfig(join(dir, 'missing.yaml'), () => {}, () => {}), /cannot read config .*missing\.yaml/);
  });

  it('applies an edit', async () => {
    const w = start();
    writeFileSync(file, `${namespace('shop')}---\n${namespace('billing')}`);
    await waitFor('the edit', () => snapshots.length === 1);
    assert.deepEqual(names(snapshots[0]), ['shop', 'billing']);
    assert.equal(w.current(), snapshots[0]);
    assert.deepEqual(errors, []);
  });

  it('keeps the last good snapshot on an invalid edit and reports it', async () => {
    const w = start();
    const good = w.current();
    writeFileSync(file, `${namespace('shop')}---\napiVersion: v1\nkind: Pod\nmetadata: { name: web }\nspec: { nodename: n }\nstatus: { podIP: 10.0.0.1 }\n`);
    await waitFor('the error report', () => errors.length === 1);
    const reported = errors[0];
    assert.ok(Array.isArray(reported), 'config problems are reported as ConfigError[]');
    assert.deepEqual(reported.map((e) => `${e.object}: ${e.field}`), ['Pod default/web: spec.nodename', 'Pod default/web: spec.nodeName']);
    assert.equal(w.current(), good);
    assert.deepEqual(snapshots, []);

    writeFileSync(file, namespace('fixed'));
    await waitFor('the fix', () => snapshots.length === 1);
    assert.deepEqual(names(w.current()), ['fixed']);
  });

  it('sees an editor-style save that renames a new file over the old one, and edits after it', async () => {
    const w = start();
    const temp = join(dir, '.mesh.yaml.swp');
    writeFileSync(temp, namespace('renamed'));
    renameSync(temp, file);
    await waitFor('the rename-replace', () => snapshots.length === 1);
    assert.deepEqual(names(w.current()), ['renamed']);

    writeFileSync(file, namespace('edited-after-rename'));
    await waitFor('the edit after the rename', () => snapshots.length === 2);
    assert.deepEqual(names(w.current()), ['edited-after-rename']);
  });

  it('stays quiet when the content or its meaning does not change', async () => {
    start();
    writeFileSync(file, namespace('shop'));
    utimesSync(file, new Date(), new Date());
    writeFileSync(file, `# a comment changes the text, not the snapshot\n${namespace('shop')}`);
    writeFileSync(join(dir, 'unrelated.txt'), 'x');
    await sleep(QUIET_MS);
    assert.deepEqual(snapshots, []);
    assert.deepEqual(errors, []);
  });

  it('reports a deleted file once, keeps the last good snapshot, and picks the file up again', async () => {
    const w = start();
    const good = w.current();
    unlinkSync(file);
    await waitFor('the missing-file report', () => errors.length === 1);
    assert.match((errors[0] as Error).message, /cannot read config .*keeping the last good config/);
    assert.equal(w.current(), good);
    await sleep(QUIET_MS);
    assert.equal(errors.length, 1);

    writeFileSync(file, namespace('back'));
    await waitFor('the recreated file', () => snapshots.length === 1);
    assert.deepEqual(names(w.current()), ['back']);
  });

  it('stops reporting after close', async () => {
    start().close();
    writeFileSync(file, namespace('after-close'));
    await sleep(QUIET_MS);
    assert.deepEqual(snapshots, []);
  });
});
