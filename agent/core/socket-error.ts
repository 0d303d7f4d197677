/** A socket call's error with what to check for its code (callers give the advice for their context). */
export type SocketError = Error & { code?: string };

export function explainSocketError(e: unknown, where: string, advice: Readonly<Record<string, string>>): SocketError {
  const err = e as SocketError;
  const hint = err.code ? advice[err.code] : undefined;
  return Object.assign(new Error(`${where}: ${err.message}${hint ? `; ${hint}` : ''}`, { cause: e }), { code: err.code ?? 'EINVAL' });
}

/**
 * An 'error' listener that does nothing, one function for every socket and stream: what a socket or
 * stream keeps once its setup has settled (a connect, a CONNECT answer), so an error before its user
 * attaches its own listener does not go unhandled, and no closure of the setup stays with it.
 */
export function ignoreError(): void {}
