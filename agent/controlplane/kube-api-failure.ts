/**
 * A failed call to the Kubernetes API as an operator reads it: "HTTP 403 Forbidden: secrets
 * "weft-ca" is forbidden: ..." rather than the client's dump of headers. Type-only: importing it
 * does not load @kubernetes/client-node.
 */
export interface ApiFailure {
  /** HTTP status; undefined when no answer came (unreachable, TLS, DNS). */
  code: number | undefined;
  /** The Status reason: NotFound, AlreadyExists, Conflict, Forbidden, ... */
  reason: string | undefined;
  message: string;
}

export function apiFailure(error: unknown): ApiFailure {
  const { code, body } = error as { code?: unknown; body?: unknown };
  if (typeof code !== 'number') return { code: undefined, reason: undefined, message: (error as Error).message };
  let status: unknown = body;
  if (typeof body === 'string') {
    try { status = JSON.parse(body); } catch { status = undefined; }
  }
  const { reason, message } = (status ?? {}) as { reason?: unknown; message?: unknown };
  const why = typeof reason === 'string' ? reason : undefined;
  return { code, reason: why, message: `HTTP ${code}${why ? ` ${why}` : ''}${typeof message === 'string' ? `: ${message}` : ''}` };
}
