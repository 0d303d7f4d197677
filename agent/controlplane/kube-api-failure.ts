/**
 * A failed call to the Kubernetes API as an operator reads it: "HTTP 403 Forbidden: secrets
 * "weft-ca" is forbidden: ..." rather than the client's dump of headers. Type-only: importing it
 * does not load @kubernetes/client-node. Also the operator-facing explanation of a failed call and
 * the one-at-a-time queue the stores write through.
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

/** What an operator needs to act on a failed read/create/update of one named object. */
export interface FailureContext {
  /** "cannot <verb> <what>" begins the message, e.g. "Secret weft-system/weft-ca". */
  what: string;
  /** Plural resource and the object's name and namespace, for the RBAC advice. */
  resource: string;
  name: string;
  namespace: string;
  /** The Role in daemonset/rbac.yaml that grants it. */
  role: string;
  /** Appended where a failure provably changed nothing (no answer, refused by RBAC). */
  unchangedNote?: string;
}

export function explainApiFailure(verb: 'read' | 'create' | 'update', failure: ApiFailure, c: FailureContext): string {
  const what = `cannot ${verb} ${c.what}`;
  const tail = c.unchangedNote ?? '';
  if (failure.code === undefined) {
    return `${what}: the request did not reach the API server (${failure.message}); check the kubeconfig or in-cluster credentials and that the API server is reachable from here${tail}`;
  }
  if (failure.code === 401 || failure.code === 403) {
    return `${what} (${failure.message}): the control plane's ServiceAccount needs get and update on ${c.resource} named ${c.name} and create on ${c.resource}, `
      + `in namespace ${c.namespace} (the Role ${c.role} in daemonset/rbac.yaml)${tail}`;
  }
  if (failure.code === 404 && verb === 'create') return `${what} (${failure.message}): does namespace ${c.namespace} exist?`;
  return `${what} (${failure.message})`;
}

/** Runs async work one at a time, in the order given; a failure does not stop the queue. */
export function serialQueue(): <T>(work: () => Promise<T>) => Promise<T> {
  let queue: Promise<unknown> = Promise.resolve();
  return <T>(work: () => Promise<T>): Promise<T> => {
    const next = queue.then(work, work);
    queue = next.catch(() => undefined);
    return next;
  };
}
