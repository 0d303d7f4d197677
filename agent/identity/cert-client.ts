import * as grpc from '@grpc/grpc-js';
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

function explain(error: grpc.ServiceError, connection: ControlPlaneConnection): CertificateRequestError {
  const code = grpc.status[error.code] ?? String(error.code);
  const where = `control plane ${connection.address}`;
  switch (error.code) {
    case grpc.status.UNAUTHENTICATED:
      return new CertificateRequestError(code, `${where} did not accept the agent's credentials: ${error.details}`);
    case grpc.status.PERMISSION_DENIED:
      return new CertificateRequestError(code, `${where} refused to sign: ${error.details}`);
    case grpc.status.INVALID_ARGUMENT:
      return new CertificateRequestError(code, `${where} rejected the request: ${error.details}`);
    case grpc.status.DEADLINE_EXCEEDED:
      return new CertificateRequestError(code, `${where} did not answer within ${connection.deadlineMs ?? DEFAULT_DEADLINE_MS} ms`);
    case grpc.status.UNAVAILABLE:
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
  const tls = controlPlaneTls(connection.address, current(connection.caPem));
  const client = new grpc.Client(connection.address, tls.credentials, tls.options);
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${current(connection.token)}`);
  metadata.set('weft-node', connection.node);
  const request: IstioCertificateRequest = { csr: csrPem, validityDuration: validitySeconds, metadata: {} };
  try {
    const response = await new Promise<Result<IstioCertificateResponse, string>>((resolve, reject) => {
      client.makeUnaryRequest(
        CREATE_CERTIFICATE_PATH,
        encodeCertificateRequest,
        decodeCertificateResponse,
        request,
        metadata,
        { deadline: Date.now() + (connection.deadlineMs ?? DEFAULT_DEADLINE_MS) },
        (error, value) => (error ? reject(explain(error, connection)) : resolve(value!)),
      );
    });
    if (!response.ok) throw new CertificateRequestError('INTERNAL', `control plane ${connection.address} sent ${response.error}`);
    if (response.value.certChain.length === 0) throw new CertificateRequestError('INTERNAL', `control plane ${connection.address} answered with an empty certificate chain`);
    return response.value.certChain;
  } finally {
    client.close();
  }
}
