/**
 * `weft demo` as a user runs it: the real CLI in a child process, building its own `demo` lab.
 * It must exit 0 (every outcome it shows held), show the key outcomes a reader relies on, and
 * leave no namespace of its lab behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { WEFT_CLI } from '../../agent/sandbox/weft-agent';
import { kernelTestBlocker } from '../support/requirements';

const blocker = kernelTestBlocker();
if (blocker) process.stderr.write(`\n*** SKIPPING weft demo test: ${blocker} ***\n\n`);
const DEADLINE_MS = 90_000;

/** Runs the CLI; kills it (SIGTERM, so it tears its lab down, then SIGKILL) at the deadline. */
function runDemo(): Promise<{ code: number | null; stdout: string; stderr: string; timedOut: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [WEFT_CLI, 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const term = setTimeout(() => { timedOut = true; child.kill('SIGTERM'); }, DEADLINE_MS);
    const kill = setTimeout(() => child.kill('SIGKILL'), DEADLINE_MS + 10_000);
    child.once('close', (code) => { clearTimeout(term); clearTimeout(kill); resolve({ code, stdout, stderr, timedOut }); });
  });
}

const LAB_RECORDS = '/run/weft-lab';
/** What of a lab named `demo` exists on this machine: its lab record (it lists the lab's nodes) and its nodes' pinned eBPF directories. */
function demoLeftovers(): string[] {
  const records = existsSync(LAB_RECORDS) ? readdirSync(LAB_RECORDS).filter((f) => f.endsWith('.json')) : [];
  const demo = records.filter((f) => { try { return JSON.parse(readFileSync(`${LAB_RECORDS}/${f}`, 'utf8')).name === 'demo'; } catch { return false; } });
  const pins = ['demo-n1', 'demo-n2'].map((n) => `/sys/fs/bpf/weft/${n}`).filter((d) => existsSync(d));
  return [...demo.map((f) => `${LAB_RECORDS}/${f}`), ...pins];
}

test('weft demo exits 0, shows L7 policy, plaintext capture, explain and STRICT, and removes its lab', { skip: blocker ?? false, timeout: DEADLINE_MS + 20_000 }, async () => {
  assert.deepEqual(demoLeftovers(), [], 'a lab named demo already exists on this machine (another weft demo running?); the test needs the name');
  const r = await runDemo();
  const out = r.stdout;
  assert.equal(r.timedOut, false, `the demo did not finish within ${DEADLINE_MS} ms:\n${out}\n${r.stderr}`);
  assert.equal(r.code, 0, `weft demo exited ${r.code}:\n${out}\n${r.stderr}`);
  assert.doesNotMatch(out, /^ *✗/m, out);
  for (const line of [
    /✓ HTTP 200; api saw the connection come from \S+: web's own address/,
    /✓ .* source principal verified from its certificate: spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web/,
    /✓ 5 requests with x-canary: yes → \{"api2":5\}: all on v2/,
    /✓ 100 requests without the header \(one curl, keep-alive\) → .*about 80\/20/,
    /✓ web GET \/orders → HTTP 200/,
    /✓ web POST \/admin\/users → HTTP 403 "RBAC: access denied"/,
    /✓ demo-n2 access log: .*"method":"POST","path":"\/admin\/users","status":403,"decision":"deny","policy":"shop\/deny-admin-post\[0\]"/,
    /✓ api's own log since the policy: GET \/orders; nothing of POST \/admin\/users/,
    /✓ legacy GET \/orders → HTTP 403 "RBAC: access denied"/,
    /\$ weft explain legacy\/legacy shop\/api:8080 GET \/orders\n {4}DENY\n/,
    /\$ weft explain shop\/web shop\/api:8080 POST \/admin\/users\n {4}DENY\n {4}policy shop\/deny-admin-post rule 0\n/,
    /✓ legacy → api: blocked/,
    /✓ demo-n2 dropped legacy's SYNs under STRICT/,
    /all \d+ outcomes shown above held/,
  ]) assert.match(out, line, out);
  assert.deepEqual(demoLeftovers(), [], 'the demo left its lab record or pinned eBPF objects behind');
  assert.match(out, /namespaces, cgroups and pins removed/);
});
