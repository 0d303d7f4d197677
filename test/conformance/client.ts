/**
 * The conformance client, run inside a client pod so the mesh captures its connections (upstream
 * execs the echo client in the client pod's `echo` container). It resolves the case's host as
 * cluster DNS would (resolve-host.ts, with the lab's Services handed in), connects to the cluster
 * IP (or pod IP), sends the Host/:authority, method and headers the case says, does not follow
 * redirects, and reports status, response headers and the echo answer (observation.ts).
 *
 *   node client.js --dns '{"namespace":NS,"services":[...],"vars":{...}}' --serve
 *       reads one JSON request per stdin line, writes one JSON reply per stdout line (the runner
 *       keeps one such process per client pod)
 *   node client.js --dns '...' --request '{"protocol":"http","host":"echo","path":"/","headers":{}}'
 *       one request (or `count` of them), prints the reply; for trying a case by hand (--keep)
 */
import * as grpc from '@grpc/grpc-js';
import * as http from 'node:http';
import * as readline from 'node:readline';
import { GRPC_ECHO_PATH } from './echo-server';
import { httpStatusOfGrpc, type EchoSeen, type Observation } from './observation';
import { resolveTarget, type DnsService, type Target } from './resolve-host';

export interface DnsTable {
  /** the client pod's namespace (the search list's first entry) */
  namespace: string;
  services: DnsService[];
  vars: Record<string, string>;
}

export interface ClientAsk {
  id?: number;
  protocol: 'http' | 'grpc';
  host: string;
  path: string;
  method: string | null;
  headers: Record<string, string>;
  /** requests to make (weighted cases), default 1 */
  count?: number;
  /** per request, default 3000 */
  timeoutMs?: number;
}

export interface ClientReply {
  id?: number;
  target?: Target;
  /** the host could not be resolved, or the ask was malformed */
  error?: string;
  observations: Observation[];
}

const BODY_LIMIT = 64 * 1024;

function asEcho(v: unknown): EchoSeen | undefined {
  if (!v || typeof v !== 'object') return undefined;
  const e = v as Partial<EchoSeen>;
  return typeof e.pod === 'string' && typeof e.namespace === 'string' && Array.isArray(e.headers) ? (e as EchoSeen) : undefined;
}

function pairs(raw: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}

function httpOnce(t: Target, ask: ClientAsk, agent: http.Agent | false, timeoutMs: number): Promise<Observation> {
  const raw: string[] = ['Host', t.authority];
  for (const [k, v] of Object.entries(ask.headers)) if (k.toLowerCase() !== 'host') raw.push(k, v);
  return new Promise((resolve) => {
    let settled = false;
    const finish = (o: Observation) => { if (!settled) { settled = true; clearTimeout(timer); resolve(o); } };
    const req = http.request({ host: t.ip, port: t.port, method: ask.method ?? 'GET', path: ask.path || '/', headers: raw as unknown as http.OutgoingHttpHeaders, agent, setHost: false });
    const timer = setTimeout(() => { req.destroy(); finish({ ok: false, error: `no answer within ${timeoutMs} ms from ${t.ip}:${t.port}` }); }, timeoutMs);
    req.on('error', (e: NodeJS.ErrnoException) => finish({ ok: false, error: `${e.code ?? 'error'}: ${e.message} (${t.ip}:${t.port})` }));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let n = 0;
      res.on('data', (d: Buffer) => { if (n < BODY_LIMIT) chunks.push(d); n += d.length; });
      res.on('error', (e) => finish({ ok: false, error: `response broken: ${e.message}` }));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let echo: EchoSeen | undefined;
        try { echo = asEcho(JSON.parse(text)); } catch { echo = undefined; }
        finish({ ok: true, status: res.statusCode ?? 0, headers: pairs(res.rawHeaders), ...(echo ? { echo } : { body: text.slice(0, 512) }) });
      });
    });
    req.end();
  });
}

async function httpAll(t: Target, ask: ClientAsk, timeoutMs: number): Promise<Observation[]> {
  const count = ask.count ?? 1;
  if (count === 1) return [await httpOnce(t, ask, false, timeoutMs)];
  // A batch goes over one keep-alive connection at a time, as a client reusing its connection would.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const out: Observation[] = [];
  for (let i = 0; i < count; i++) {
    const o = await httpOnce(t, ask, agent, timeoutMs);
    out.push(o);
    if (!o.ok) break; // a batch stops at its first failed request, as upstream's does
  }
  agent.destroy();
  return out;
}

const json = { serialize: (o: unknown) => Buffer.from(JSON.stringify(o)), deserialize: (b: Buffer) => JSON.parse(b.toString()) as unknown };
const EchoClient = grpc.makeGenericClientConstructor({
  Echo: { path: GRPC_ECHO_PATH, requestStream: false, responseStream: false, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
}, 'EchoTestService');

function grpcOnce(client: grpc.Client, ask: ClientAsk, timeoutMs: number): Promise<Observation> {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(ask.headers)) if (k.toLowerCase() !== 'host') md.add(k.toLowerCase(), v);
  return new Promise((resolve) => {
    let initial: Array<[string, string]> = [];
    const call = (client as unknown as Record<string, Function>).Echo!.call(client, { message: 'weft conformance' }, md, { deadline: Date.now() + timeoutMs },
      (e: grpc.ServiceError | null, reply: unknown) => {
        if (e) {
          const status = e.code === grpc.status.UNAVAILABLE && /connect|No connection/i.test(e.details) ? undefined : httpStatusOfGrpc(e.code);
          resolve(status === undefined
            ? { ok: false, error: `gRPC ${grpc.status[e.code]}: ${e.details}` }
            : { ok: true, status, headers: initial, grpcCode: e.code, grpcDetails: e.details });
          return;
        }
        const echo = asEcho(reply);
        resolve({ ok: true, status: 200, headers: initial, grpcCode: 0, ...(echo ? { echo } : { body: JSON.stringify(reply).slice(0, 512) }) });
      }) as grpc.ClientUnaryCall;
    call.on('metadata', (m: grpc.Metadata) => {
      initial = Object.entries(m.getMap()).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString('base64') : String(v)]);
    });
  });
}

async function grpcAll(t: Target, ask: ClientAsk, timeoutMs: number): Promise<Observation[]> {
  const target = t.ip.includes(':') ? `[${t.ip}]:${t.port}` : `${t.ip}:${t.port}`;
  const client = new EchoClient(target, grpc.credentials.createInsecure(), { 'grpc.default_authority': t.authority });
  const out: Observation[] = [];
  try {
    for (let i = 0; i < (ask.count ?? 1); i++) {
      const o = await grpcOnce(client, ask, timeoutMs);
      out.push(o);
      if (!o.ok) break;
    }
  } finally {
    client.close();
  }
  return out;
}

export async function perform(ask: ClientAsk, dns: DnsTable): Promise<ClientReply> {
  const id = ask.id;
  const t = resolveTarget({ protocol: ask.protocol, host: ask.host, headers: ask.headers ?? {} }, dns.namespace, dns.services, dns.vars);
  if (!t.ok) return { id, error: t.error, observations: [] };
  const timeoutMs = ask.timeoutMs ?? 3000;
  const observations = ask.protocol === 'grpc' ? await grpcAll(t.value, ask, timeoutMs) : await httpAll(t.value, ask, timeoutMs);
  return { id, target: t.value, observations };
}

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  const dnsText = argValue('dns');
  if (!dnsText) throw new Error('--dns JSON is required ({"namespace":..., "services":[...], "vars":{...}})');
  const dns = JSON.parse(dnsText) as DnsTable;
  const once = argValue('request');
  if (once) {
    process.stdout.write(JSON.stringify(await perform(JSON.parse(once) as ClientAsk, dns), null, 2) + '\n');
    return;
  }
  if (!process.argv.includes('--serve')) throw new Error('give --serve or --request JSON');
  const rl = readline.createInterface({ input: process.stdin });
  process.stdout.write('ready\n');
  for await (const line of rl) {
    if (!line.trim()) continue;
    let reply: ClientReply;
    try {
      reply = await perform(JSON.parse(line) as ClientAsk, dns);
    } catch (e) {
      reply = { error: `client: ${(e as Error).message}`, observations: [] };
    }
    process.stdout.write(JSON.stringify(reply) + '\n');
  }
}

if (require.main === module) {
  main().catch((e: Error) => {
    process.stderr.write(`conformance client: ${e.message}\n`);
    process.exit(1);
  });
}
