/**
 * `weft explain` as a command: offline over a config file (`--config`), or by asking the running
 * agent's admin API (`/explain`), which answers with the same function over the state it enforces.
 */
import { readFileSync } from 'node:fs';
import { parseConfig } from '../config/parse';
import { PolicySet } from '../policy';
import { WorkloadStore } from '../state/store';
import { explain, formatExplain, parseExplainTarget, parseHeaderFlags, type ExplainAnswer, type ExplainQuery } from './explain';

export interface ExplainFlags { config?: string; admin?: string; host?: string; header: string[] }

/** Exit 0 for ALLOW, 1 for DENY (scripts can test it), 2 for a question that cannot be answered. */
export async function explainCommand(positionals: string[], f: ExplainFlags, defaultAdmin: string): Promise<{ code: number; text: string }> {
  const target = parseExplainTarget(positionals);
  if (!target.ok) return { code: 2, text: `weft explain: ${target.error}\n` };
  const headers = parseHeaderFlags(f.header);
  if (!headers.ok) return { code: 2, text: `weft explain: ${headers.error}\n` };
  const query: ExplainQuery = { ...target.value, ...(f.host === undefined ? {} : { host: f.host }), headers: headers.value };
  const answer = f.config !== undefined ? offline(f.config, query) : await online(f.admin ?? defaultAdmin, query);
  if (!answer.ok) return { code: 2, text: `weft explain: ${answer.error}\n` };
  return { code: answer.value.decision === 'ALLOW' ? 0 : 1, text: formatExplain(answer.value) };
}

function offline(path: string, q: ExplainQuery): { ok: true; value: ExplainAnswer } | { ok: false; error: string } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    return { ok: false, error: `cannot read ${path}: ${(e as Error).message}` };
  }
  const parsed = parseConfig(text, path);
  if (!parsed.ok) return { ok: false, error: `${path} is not valid:\n  ${parsed.error.map((e) => `${e.object}: ${e.field ? `${e.field}: ` : ''}${e.message}`).join('\n  ')}` };
  return explain(new WorkloadStore(parsed.value), new PolicySet(parsed.value.authorizationPolicies), q);
}

/** The query as the admin API's parameters: src, dst, port, method, path, host, header=NAME=VALUE. */
export function explainParams(q: ExplainQuery): URLSearchParams {
  const p = new URLSearchParams({ src: q.src, dst: q.dst });
  if (q.port !== undefined) p.set('port', String(q.port));
  if (q.method !== undefined) p.set('method', q.method);
  if (q.path !== undefined) p.set('path', q.path);
  if (q.host !== undefined) p.set('host', q.host);
  for (const [k, v] of Object.entries(q.headers ?? {})) p.append('header', `${k}=${v}`);
  return p;
}

/** The admin API's parameters back into a query. */
export function explainQueryOf(p: URLSearchParams): { ok: true; value: ExplainQuery } | { ok: false; error: string } {
  const src = p.get('src');
  const dst = p.get('dst');
  if (!src || !dst) return { ok: false, error: '/explain needs ?src=...&dst=...' };
  const port = p.get('port') === null ? undefined : Number(p.get('port'));
  if (port !== undefined && !(Number.isInteger(port) && port >= 1 && port <= 65535)) return { ok: false, error: `port must be 1-65535 (got ${p.get('port')})` };
  const headers = parseHeaderFlags(p.getAll('header'));
  if (!headers.ok) return headers;
  const method = p.get('method');
  const path = p.get('path');
  const host = p.get('host');
  return { ok: true, value: { src, dst, ...(port === undefined ? {} : { port }), ...(method ? { method } : {}), ...(path ? { path } : {}), ...(host ? { host } : {}), headers: headers.value } };
}

async function online(admin: string, q: ExplainQuery): Promise<{ ok: true; value: ExplainAnswer } | { ok: false; error: string }> {
  const res = await fetch(`http://${admin}/explain?${explainParams(q).toString()}`).catch((e: Error) => e);
  if (res instanceof Error) return { ok: false, error: `cannot reach the agent's admin API at ${admin} (${res.message}); is 'weft local' or 'weft agent' running on this host? Or pass --config FILE` };
  const body = await res.json() as ExplainAnswer | { error: string };
  if ('error' in body) return { ok: false, error: body.error };
  return { ok: true, value: body };
}
