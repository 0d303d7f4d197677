import { GrpcChannel, GrpcError } from '../core/grpc-client';
import { GrpcStatus, statusName } from '../core/grpc-status';
import { controlPlaneTls } from './control-plane-tls';
import {
  CREATE_CERTIFICATE_PATH, decodeCertificateResponse, encodeCertificateRequest,
  type IstioCertificateRequest, type IstioCertificateResponse,
} from '../controlplane/istio-ca-wire';
import type { Result } from '../core/result';

/**
 * A credential that may change while the agent runs (a rotated token file, a refreshed trust
 * bundle): a function is asked again for every request, so the next one uses the new value.
 */
export type Live<T> = T | (() => T);

export function current<T>(value: Live<T>): T {
  return typeof value === 'function' ? (value as () => T)() : value;
}

export interface ControlPlaneConnection {
  /** host:port; the host must be in the control plane's serving certificate (DNS or IP SAN). */
  address: string;
  /** The control plane's trust bundle (its ca.pem): the only roots its serving certificate may chain to. */
  caPem: Live<string>;
  /** Bootstrap token (local mode) or the agent's ServiceAccount token (Kubernetes). */
  token: Live<string>;
  node: string;
  deadlineMs?: number;
}

/** A refused or failed certificate request; `code` is the gRPC status name, e.g. `PERMISSION_DENIED`. */
export class CertificateRequestError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'CertificateRequestError';
  }
}

function explain(error: GrpcError, connection: ControlPlaneConnection): CertificateRequestError {
  const code = statusName(error.code);
  const where = `control plane ${connection.address}`;
  switch (error.code) {
    case GrpcStatus.UNAUTHENTICATED:
      return new CertificateRequestError(code, `${where} did not accept the agent's credentials: ${error.details}`);
    case GrpcStatus.PERMISSION_DENIED:
      return new CertificateRequestError(code, `${where} refused to sign: ${error.details}`);
    case GrpcStatus.INVALID_ARGUMENT:
      return new CertificateRequestError(code, `${where} rejected the request: ${error.details}`);
    case GrpcStatus.DEADLINE_EXCEEDED:
      return new CertificateRequestError(code, `${where} did not answer within ${connection.deadlineMs ?? DEFAULT_DEADLINE_MS} ms`);
    case GrpcStatus.UNAVAILABLE:
      return new CertificateRequestError(code, `${where} is unreachable or failed TLS verification (${error.details}): check --control-plane, that it listens, and that --ca-file is its ca.pem`);
    default:
      return new CertificateRequestError(code, `${where} failed the request: ${code} ${error.details}`);
  }
}

const DEFAULT_DEADLINE_MS = 10_000;

/**
 * Asks the control plane to sign `csrPem` (Istio's CreateCertificate); resolves to the chain, leaf
 * first. Each request takes the token and trust bundle as they are now, on a connection of its own.
 */
export async function requestCertificate(connection: ControlPlaneConnection, csrPem: string, validitySeconds: number): Promise<string[]> {
  const channel = new GrpcChannel(controlPlaneTls(connection.address, current(connection.caPem)));
  const metadata = { authorization: `Bearer ${current(connection.token)}`, 'weft-node': connection.node };
  const request: IstioCertificateRequest = { csr: csrPem, validityDuration: validitySeconds, metadata: {} };
  try {
    const answer = await channel.unary(CREATE_CERTIFICATE_PATH, encodeCertificateRequest(request), metadata, connection.deadlineMs ?? DEFAULT_DEADLINE_MS)
      .catch((error: unknown) => { throw error instanceof GrpcError ? explain(error, connection) : error; });
    const response: Result<IstioCertificateResponse, string> = decodeCertificateResponse(answer);
    if (!response.ok) throw new CertificateRequestError('INTERNAL', `control plane ${connection.address} sent ${response.error}`);
    if (response.value.certChain.length === 0) throw new CertificateRequestError('INTERNAL', `control plane ${connection.address} answered with an empty certificate chain`);
    return response.value.certChain;
  } finally {
    channel.close();
  }
}
