/**
 * What connecting from the client's address costs the delivering proxy per connection: a
 * transparent socket made through libc (socket, SO_REUSEADDR, IP_TRANSPARENT, bind: four FFI calls)
 * and handed to Node by fd, against Node's own connect, on loopback, sequentially, alternated over
 * rounds. Connect until 'connect' fires, then destroy. Also the fallback (the client's port taken:
 * a failed bind, then a kernel-picked port).
 * Usage: node dist/test/bench/transparent-connect.js [connects per round, default 2000]
 */
import net from 'node:net';
import { connectWithTimeout } from '../../agent/proxy/connect';
import { connectTransparent } from '../../agent/proxy/transparent-socket';

const N = Number(process.argv[2] ?? 2000);
const ROUNDS = 5;

async function main(): Promise<void> {
  const server = net.createServer((s) => { s.on('error', () => undefined); s.destroy(); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const holder = net.createServer();
  await new Promise<void>((r) => holder.listen(0, '127.0.0.9', r));
  const held = (holder.address() as net.AddressInfo).port;
  const ways: Array<[string, () => Promise<net.Socket>]> = [
    ['node connect', () => connectWithTimeout('127.0.0.1', port, 5000, 'stream')],
    ['transparent, kernel port', () => connectTransparent({ ip: '127.0.0.8', port: 0 }, { ip: '127.0.0.1', port }, 5000)],
    ['transparent, port taken', () => connectTransparent({ ip: '127.0.0.9', port: held }, { ip: '127.0.0.1', port }, 5000)],
  ];
  const samples = new Map<string, number[]>(ways.map(([name]) => [name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, connect] of ways) {
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      for (let i = 0; i < N; i++) (await connect()).destroy();
      const wall = (performance.now() - t0) / N * 1000;
      const cpu = process.cpuUsage(cpu0);
      samples.get(name)!.push(wall, (cpu.user + cpu.system) / N);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log(`${N} sequential connects x ${ROUNDS} rounds (loopback), median per connect`);
  for (const [name, xs] of samples) {
    const wall = xs.filter((_, i) => i % 2 === 0), cpu = xs.filter((_, i) => i % 2 === 1);
    console.log(`  ${name.padEnd(26)} wall ${median(wall).toFixed(1).padStart(6)} us   cpu ${median(cpu).toFixed(1).padStart(6)} us`);
  }
  server.close();
  holder.close();
}

void main();
