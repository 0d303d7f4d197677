import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { BoundedWatch, watchTimeoutSeconds, type WatchTiming } from '../../agent/controlplane/kube-watch';

/**
 * The API server is a dependency here, not the thing under test: a loopback HTTP server answers
 * each watch request as the test case scripts it (events, a bad line, silence, a refusal).
 */

type Script = (req: IncomingMessage, res: ServerResponse, url: URL) => void;
let script: Script = (_req, res) => res.writeHead(500).end();
const requests: URL[] = [];
const closedByClient: string[] = [];
let server: Server;
let kc: KubeConfig;

before(async () => {
  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push(url);
    req.socket.on('close', () => closedByClient.push(url.pathname));
    script(req, res, url);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'fake', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
    users: [{ name: 'test' }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'test' }],
    currentContext: 'fake',
  });
});

after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const FAST: WatchTiming = { minTimeoutSeconds: 1, graceMs: 300, headersMs: 500 };
const event = (type: string, name: string, rv: string) => `${JSON.stringify({ type, object: { metadata: { name, resourceVersion: rv } } })}\n`;

interface Run { events: Array<[string, string]>; done: Promise<unknown>; controller: AbortController; startedAt: number }

async function run(timing: WatchTiming, query: Record<string, string | undefined> = {}, random = () => 0): Promise<Run> {
  const events: Array<[string, string]> = [];
  let finish!: (err: unknown) => void;
  const done = new Promise<unknown>((resolve) => { finish = resolve; });
  const startedAt = Date.now();
  const controller = await new BoundedWatch(kc, timing, random).watch('/api/v1/namespaces', query, (phase, obj: { metadata: { name: string } }) => {
    events.push([phase, obj.metadata.name]);
  }, finish);
  return { events, done, controller, startedAt };
}

test('timeoutSeconds is drawn from [min, 2 × min), as client-go does, and never 0', () => {
  assert.equal(watchTimeoutSeconds(300, 0), 300);
  assert.equal(watchTimeoutSeconds(300, 0.5), 450);
  assert.equal(watchTimeoutSeconds(300, 0.999999), 599);
  assert.equal(watchTimeoutSeconds(0, 0.5), 1);
});

test('asks the API server to end the watch and to send bookmarks, keeps the caller\'s resourceVersion, delivers events in order, and a watch the server ends is done without error', async () => {
  script = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(event('ADDED', 'a', '5') + event('MODIFIED', 'a', '6') + '\n' + event('BOOKMARK', '', '7'));
  };
  requests.length = 0;
  const w = await run({ minTimeoutSeconds: 300, graceMs: 1000, headersMs: 1000 }, { resourceVersion: '4', labelSelector: undefined }, () => 0.5);
  assert.equal(await w.done, null);
  assert.deepEqual(w.events, [['ADDED', 'a'], ['MODIFIED', 'a'], ['BOOKMARK', '']], 'the empty line is skipped');
  const q = requests[0].searchParams;
  assert.deepEqual(Object.fromEntries(q), { resourceVersion: '4', watch: 'true', allowWatchBookmarks: 'true', timeoutSeconds: '450' });
});

test('a line that is not JSON ends the watch with an error after the events before it, so the informer resumes from the last one applied', async () => {
  script = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write(event('ADDED', 'a', '5'));
    res.write('{"type":"MODIFIED","object":{"metadata":{"na\n');
    res.write(event('ADDED', 'b', '7')); // after the bad line: not delivered
  };
  const w = await run({ minTimeoutSeconds: 300, graceMs: 1000, headersMs: 1000 });
  const err = await w.done as Error;
  assert.match(err.message, /a line that is not JSON \("\{\\"type\\":\\"MODIFIED/);
  assert.deepEqual(w.events, [['ADDED', 'a']]);
});

test('response headers that never come end the watch with an error after headersMs, and the connection is closed', async () => {
  script = () => { /* never answers */ };
  closedByClient.length = 0;
  const w = await run(FAST);
  const err = await w.done as Error;
  const took = Date.now() - w.startedAt;
  assert.match(err.message, /no response in 500 ms/);
  assert.ok(took >= 450 && took < 5_000, `ended after ${took} ms`);
  await waitUntil(() => closedByClient.length === 1, 'the server sees the connection closed');
});

test('a watch the API server neither ends nor writes to (a stalled connection) ends with an error graceMs past the timeout it asked for', async () => {
  script = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write(event('ADDED', 'a', '5')); // then silence, the connection kept open
  };
  closedByClient.length = 0;
  const w = await run(FAST); // timeoutSeconds 1 (random 0), grace 300 ms
  const err = await w.done as Error;
  const took = Date.now() - w.startedAt;
  assert.match(err.message, /still open 300 ms past the 1 s the API server was asked to end it in: the connection stalled/);
  assert.ok(took >= 1_250 && took < 6_000, `ended after ${took} ms`);
  assert.deepEqual(w.events, [['ADDED', 'a']]);
  await waitUntil(() => closedByClient.length === 1, 'the server sees the connection closed');
});

test('a refusal is an error carrying the status code (ListWatch relists on 410) and the Status message', async () => {
  script = (_req, res) => {
    res.writeHead(410, { 'content-type': 'application/json' }).end(JSON.stringify({ kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version: 4 (9)' }));
  };
  const w = await run(FAST, { resourceVersion: '4' });
  const err = await w.done as Error & { statusCode?: number };
  assert.equal(err.statusCode, 410);
  assert.match(err.message, /^410 Gone: too old resource version: 4 \(9\)$/);
});

test('a connection that breaks in the middle of the watch is an error, not a normal end', async () => {
  script = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write(event('ADDED', 'a', '5'), () => res.socket?.destroy());
  };
  const w = await run({ minTimeoutSeconds: 300, graceMs: 1000, headersMs: 1000 });
  const err = await w.done as Error;
  assert.ok(err instanceof Error, `done(${String(err)})`);
  assert.deepEqual(w.events, [['ADDED', 'a']]);
});

test('the owner aborting ends the watch quietly: the connection closes and done is not called', async () => {
  script = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write(event('ADDED', 'a', '5'));
  };
  closedByClient.length = 0;
  const w = await run(FAST);
  await waitUntil(() => w.events.length === 1, 'the first event');
  w.controller.abort();
  await waitUntil(() => closedByClient.length === 1, 'the server sees the connection closed');
  const outcome = await Promise.race([w.done.then(() => 'done called'), new Promise((resolve) => setTimeout(resolve, 2_000, 'quiet'))]);
  assert.equal(outcome, 'quiet', 'past the stall deadline too');
});

async function waitUntil(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
}
