/** Stable codes a caller can match on; the message says what the operator should check. */
export type HboneErrorCode =
  | 'HBONE_FORBIDDEN'
  | 'HBONE_TARGET_REFUSED'
  | 'HBONE_TARGET_TIMEOUT'
  | 'HBONE_BAD_PEER'
  | 'HBONE_CERT_REJECTED'
  | 'HBONE_UNREACHABLE'
  | 'HBONE_TIMEOUT'
  | 'HBONE_PROTOCOL';

export class HboneError extends Error {
  constructor(readonly code: HboneErrorCode, message: string) {
    super(message);
    this.name = 'HboneError';
  }
}

/** Response header the server uses to say why it refused a stream. */
export const REASON_HEADER = 'weft-reason';

/** Turns a non-200 answer to CONNECT into an error; `where` names the node proxy and target. */
export function errorForStatus(status: number, reason: string | undefined, where: { node: string; target: string }): HboneError {
  const why = reason ? `: ${reason}` : '';
  switch (status) {
    case 403:
      return new HboneError('HBONE_FORBIDDEN', `node proxy ${where.node} denied the connection to ${where.target}${why}; check the AuthorizationPolicy that applies to the destination`);
    case 503:
      return new HboneError('HBONE_TARGET_REFUSED', `node proxy ${where.node} could not connect to ${where.target}${why}; is the pod listening on that port?`);
    case 504:
      return new HboneError('HBONE_TARGET_TIMEOUT', `node proxy ${where.node} timed out connecting to ${where.target}${why}; is the pod running and reachable from its node?`);
    default:
      return new HboneError('HBONE_PROTOCOL', `node proxy ${where.node} answered CONNECT ${where.target} with status ${status}${why}`);
  }
}

const REJECTED_BY_PEER = /ALERT_(CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_EXPIRED|CERTIFICATE_UNKNOWN|DECRYPT_ERROR|ACCESS_DENIED)/;
// OpenSSL's verification results for the server's chain.
const PEER_NOT_VERIFIED = /^(CERT_|UNABLE_TO_|SELF_SIGNED|DEPTH_ZERO|INVALID_|PATH_LENGTH)/;
const UNREACHABLE = new Set(['ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EPIPE']);

/** Explains why a session to a node proxy failed (TLS verification, refusal of our certificate, the network). */
export function errorForSession(cause: Error & { code?: string }, where: { node: string; source: string }): HboneError {
  if (cause instanceof HboneError) return cause;
  const code = cause.code ?? '';
  if (REJECTED_BY_PEER.test(code)) {
    return new HboneError('HBONE_CERT_REJECTED', `node proxy ${where.node} refused the certificate of ${where.source} (${code}); check that both nodes trust the same root and that the certificate has not expired`);
  }
  if (code === 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE') {
    return new HboneError('HBONE_BAD_PEER', `node proxy ${where.node} holds no certificate for the workload named by the TLS server name (or none was sent); check that the destination pod runs on that node, is in the mesh and has its identity`);
  }
  if (UNREACHABLE.has(code)) {
    return new HboneError('HBONE_UNREACHABLE', `cannot reach the node proxy at ${where.node} (${code}); is the agent running there, and is TCP port 15008 open between the nodes (NetworkPolicy, firewall)?`);
  }
  if (PEER_NOT_VERIFIED.test(code)) {
    return new HboneError('HBONE_BAD_PEER', `the node proxy at ${where.node} did not prove an acceptable identity (${code}: ${cause.message}); check that it holds a certificate from this mesh's root for the expected workload`);
  }
  return new HboneError('HBONE_PROTOCOL', `the session with the node proxy at ${where.node} failed (${code || cause.message}); HBONE needs TLS 1.3 with ALPN h2 on port 15008`);
}

/**
 * A session that closed before the server's SETTINGS, with no error to show for it. In TLS 1.3 the
 * server checks our certificate after our side of the handshake is done, and its alert reaches
 * Node as a plain close: after a completed handshake, a refused certificate is the likely cause.
 */
export function errorForEarlyClose(handshaken: boolean, where: { node: string; source: string }): HboneError {
  return handshaken
    ? new HboneError('HBONE_CERT_REJECTED', `node proxy ${where.node} closed the connection right after the TLS handshake: it most likely refused the certificate of ${where.source}; check that both nodes trust the same root and that the certificate has not expired`)
    : new HboneError('HBONE_UNREACHABLE', `the connection to node proxy ${where.node} closed during the TLS handshake; is the agent there running, and is TCP port 15008 open between the nodes (NetworkPolicy, firewall)?`);
}
