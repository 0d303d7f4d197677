/**
 * The agent's credentials as files that change under it: in Kubernetes the kubelet rotates the
 * projected ServiceAccount token (--token-file) and refreshes the mounted trust-bundle ConfigMap
 * (--ca-file) when the CA rotates. Each is read again when it is asked for and its last read is
 * older than a few seconds, so every request and reconnect to the control plane uses what the file
 * holds now. A file that becomes unreadable or empty keeps its last good value, with a warning.
 */
import { readFileSync } from 'node:fs';
import { operationalLogger } from '../core/log';
import { err, ok, type Result } from '../core/result';

/** Where daemonset/agent.yaml mounts them; the defaults of `weft agent` in a pod. */
export const IN_POD_CREDENTIALS = {
  /** Projected ServiceAccount token, audience `weft` (AGENT_TOKEN_AUDIENCE). */
  tokenFile: '/var/run/secrets/tokens/weft-token',
  /** The ConfigMap weft-system/weft-trust-bundle, key ca.pem. */
  caFile: '/var/run/secrets/weft/ca.pem',
} as const;

/** Longest a value read from a file is used before the file is read again. */
export const CREDENTIAL_MAX_AGE_MS = 2_000;

export interface CredentialFileOptions {
  maxAgeMs?: number;
  /** Milliseconds; tests move it. */
  now?: () => number;
}

export interface AgentCredentials {
  /** The bearer token, as the file holds it now (at most `maxAgeMs` old). */
  token: () => string;
  /** The control plane's trust bundle (PEM roots), as the file holds it now; also the roots peers must chain to. */
  caPem: () => string;
}

type Parse = (text: string) => Result<string, string>;

const log = operationalLogger('agent');

const parseToken: Parse = (text) => {
  const token = text.trim();
  if (token === '') return err('it is empty');
  if (/\s/.test(token)) return err('it holds more than one word; a token is one');
  return ok(token);
};

const parseBundle: Parse = (text) => {
  if (!text.includes('-----BEGIN CERTIFICATE-----')) return err('it holds no PEM certificate');
  return ok(text.trim() + '\n');
};

/**
 * `() => value` over `path`: read now (a missing, unreadable or malformed file is an error thrown
 * here, naming `what`), then again whenever asked and the last read is older than `maxAgeMs`.
 */
export function credentialFile(path: string, what: string, parse: Parse, options: CredentialFileOptions = {}): () => string {
  const maxAgeMs = options.maxAgeMs ?? CREDENTIAL_MAX_AGE_MS;
  const now = options.now ?? Date.now;
  const read = (): Result<string, string> => {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      return err((e as Error).message);
    }
    return parse(text);
  };
  const first = read();
  if (!first.ok) throw new Error(`cannot read the ${what} ${path}: ${first.error}`);
  let value = first.value;
  let readAt = now();
  let failing: string | undefined;
  return () => {
    if (now() - readAt < maxAgeMs) return value;
    readAt = now();
    const fresh = read();
    if (!fresh.ok) {
      if (failing !== fresh.error) log.warn({ path, reason: fresh.error }, `cannot read the ${what}; using the last one read`);
      failing = fresh.error;
      return value;
    }
    if (failing !== undefined) log.info({ path }, `the ${what} is readable again`);
    failing = undefined;
    if (fresh.value !== value) log.info({ path }, `the ${what} changed; using the new one from now on`);
    value = fresh.value;
    return value;
  };
}

/** The token and trust bundle files of `weft agent` (and of `weft local`, from its data directory). */
export function readAgentCredentials(tokenFile: string, caFile: string, options: CredentialFileOptions = {}): AgentCredentials {
  return {
    token: credentialFile(tokenFile, 'token file', parseToken, options),
    caPem: credentialFile(caFile, 'control plane CA file', parseBundle, options),
  };
}
