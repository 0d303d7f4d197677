/**
 * What happens to connections queued in a listener when it closes while a successor's listener
 * shares its port (docs/upgrade.md). Two SO_REUSEPORT listeners on 127.0.0.1: B accepts and
 * answers; A (the old agent) never accepts, so every connection the kernel hashes to it waits in
 * its accept queue, as it would behind a busy event loop. Then A closes. Counted: connections that
 * were answered (migrated to B) and connections that were reset. Three ways: no migration, the
 * `net.ipv4.tcp_migrate_req` sysctl, and the sk_reuseport/migrate program (bpf/weft_reuseport.c).
 *
 * Run it in a network namespace of its own (the sysctl is per namespace):
 *   unshare -n sh -c 'ip link set lo up && node dist/test/bench/listener-handover.js'
 */
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import * as libc from '../../native/libc';
import { listenShared, loadMigrateProgram, sharedListenerFd } from '../../agent/proxy/shared-listener';

const CONNECTIONS = Number(process.env.HANDOVER_CONNECTIONS ?? 400);
const SYSCTL = '/proc/sys/net/ipv4/tcp_migrate_req';

async function round(port: number): Promise<{ answered: number; reset: number; other: number }> {
  const b = net.createServer((s) => { s.on('error', () => undefined); s.end('ok'); });
  await listenShared(b, { host: '127.0.0.1', port });
  const a = sharedListenerFd({ host: '127.0.0.1', port, backlog: 4096 });
  const results = await new Promise<string[]>((resolve) => {
    const out: string[] = [];
    let connected = 0;
    for (let i = 0; i < CONNECTIONS; i++) {
      const c = net.connect(port, '127.0.0.1');
      let got = '';
      c.on('connect', () => { if (++connected === CONNECTIONS) setTimeout(() => libc.close(a), 100); });
      c.on('data', (d) => { got += d; });
      c.on('end', () => { out.push(got === 'ok' ? 'answered' : 'eof'); c.destroy(); if (out.length === CONNECTIONS) resolve(out); });
      c.on('error', (e: NodeJS.ErrnoException) => { out.push(e.code ?? 'error'); if (out.length === CONNECTIONS) resolve(out); });
    }
  });
  await new Promise((r) => b.close(r));
  return {
    answered: results.filter((r) => r === 'answered').length,
    reset: results.filter((r) => r === 'ECONNRESET').length,
    other: results.filter((r) => r !== 'answered' && r !== 'ECONNRESET').length,
  };
}

async function main(): Promise<void> {
  const before = readFileSync(SYSCTL, 'utf8').trim();
  try {
    writeFileSync(SYSCTL, '0');
    const none = await round(17001);
    writeFileSync(SYSCTL, '1');
    const sysctl = await round(17002);
    writeFileSync(SYSCTL, '0');
    loadMigrateProgram(join(__dirname, '..', '..', 'bpf'));
    const program = await round(17003);
    console.log(`# listener handover: ${CONNECTIONS} connections, about half queued in the closing listener`);
    console.log(JSON.stringify({ none, sysctl, program }));
  } finally {
    writeFileSync(SYSCTL, before);
  }
}

void main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
