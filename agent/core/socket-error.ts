/** A socket call's error with what to check for its code (callers give the advice for their context). */
export type SocketError = Error & { code?: string };

export function explainSocketError(e: unknown, where: string, advice: Readonly<Record<string, string>>): SocketError {
  const err = e as SocketError;
  const hint = err.code ? advice[err.code] : undefined;
  return Object.assign(new Error(`${where}: ${err.message}${hint ? `; ${hint}` : ''}`, { cause: e }), { code: err.code ?? 'EINVAL' });
}
