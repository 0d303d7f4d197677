import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { err, ok, type Result } from '../core/result';
import { operationalLogger } from '../core/log';
import { parseSpiffeId } from '../identity/spiffe';
import type { Authenticator, Caller } from './authenticator';
import type { CertificateAuthority, ServingCertificate } from './ca';
import { DEFAULT_WORKLOAD_TTL_SECONDS } from './ca';
import { authorizeCsr, type PodPlacement } from './cert-authorizer';
import { readCsr } from './csr';
import {
  CREATE_CERTIFICATE_PATH, decodeCertificateRequest, encodeCertificateResponse,
  type IstioCertificateRequest, type IstioCertificateResponse,
} from './istio-ca-wire';

/**
 * `istio.v1.auth.IstioCertificateService/CreateCertificate`: authenticate the agent, read the
 * identity its CSR asks for, allow it only for pods on the agent's node, sign. Every issuance and
 * refusal is logged with who asked for what.
 */

export interface CertServiceOptions {
  ca: CertificateAuthority;
  authenticator: Authenticator;
  podsProvider: () => PodPlacement[];
  /** Longest validity a caller may ask for; default 7 days. */
  maxTtlSeconds?: number;
}

const DEFAULT_MAX_TTL_SECONDS = 7 * 86_400;

const log = operationalLogger('ca');

interface Refusal {
  code: grpc.status;
  message: string;
  /** What was asked for, once the CSR has been read far enough to say. */
  identity?: string;
}

const istioCertificateService: grpc.ServiceDefinition = {
  CreateCertificate: {
    path: CREATE_CERTIFICATE_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: () => { throw new Error('the server does not send requests'); },
    requestDeserialize: (bytes: Buffer): Result<IstioCertificateRequest, string> => decodeCertificateRequest(bytes),
    responseSerialize: (response: IstioCertificateResponse) => encodeCertificateResponse(response),
    responseDeserialize: () => { throw new Error('the server does not read responses'); },
  },
};

/** The listener's credentials: server TLS only, callers authenticate with a token in metadata. */
export function tlsServerCredentials(serving: ServingCertificate): grpc.ServerCredentials {
  return grpc.ServerCredentials.createSsl(null, [{ private_key: Buffer.from(serving.keyPem), cert_chain: Buffer.from(serving.certChainPem) }], false);
}

function refuse(code: grpc.status, message: string, identity?: string): { ok: false; error: Refusal } {
  return err(identity === undefined ? { code, message } : { code, message, identity });
}

function validitySeconds(requested: number, max: number): Result<number, Refusal> {
  if (requested === 0) return ok(Math.min(DEFAULT_WORKLOAD_TTL_SECONDS, max));
  if (requested < 0 || requested > max) {
    return refuse(grpc.status.INVALID_ARGUMENT, `validity_duration ${requested}s is outside 1..${max}s (0 asks for the default)`);
  }
  return ok(requested);
}

async function issue(options: CertServiceOptions, caller: Caller, request: IstioCertificateRequest): Promise<Result<{ identity: string; chain: string[] }, Refusal>> {
  const ttl = validitySeconds(request.validityDuration, options.maxTtlSeconds ?? DEFAULT_MAX_TTL_SECONDS);
  if (!ttl.ok) return ttl;
  const csr = await readCsr(request.csr);
  if (!csr.ok) return refuse(grpc.status.INVALID_ARGUMENT, csr.error);
  if (csr.value.uris.length !== 1) {
    return refuse(grpc.status.INVALID_ARGUMENT, `the CSR must carry exactly one URI SAN, the workload's SPIFFE ID (spiffe://${options.ca.trustDomain}/ns/<namespace>/sa/<serviceaccount>); it has ${csr.value.uris.length}`);
  }
  const identity = csr.value.uris[0]!;
  const parsed = parseSpiffeId(identity);
  if (!parsed.ok) return refuse(grpc.status.INVALID_ARGUMENT, `the CSR's URI SAN is not a workload SPIFFE ID: ${parsed.error}`, identity);
  const decision = authorizeCsr(caller, parsed.value, options.podsProvider());
  if (!decision.allow) {
    return refuse(grpc.status.PERMISSION_DENIED, `node ${caller.node} may not get a certificate for ${identity}: ${decision.reason}`, identity);
  }
  const chain = await options.ca.signWorkloadCsr(request.csr, { identity, ttlSeconds: ttl.value });
  if (!chain.ok) return refuse(grpc.status.INVALID_ARGUMENT, chain.error, identity);
  return ok({ identity, chain: chain.value });
}

async function createCertificate(options: CertServiceOptions, call: grpc.ServerUnaryCall<Result<IstioCertificateRequest, string>, IstioCertificateResponse>): Promise<Result<IstioCertificateResponse, Refusal>> {
  const peer = call.getPeer();
  const caller = await options.authenticator.authenticate(call.metadata);
  if (!caller.ok) {
    log.warn({ peer, reason: caller.error }, 'certificate refused: caller not authenticated');
    return refuse(grpc.status.UNAUTHENTICATED, caller.error);
  }
  const who = { peer, subject: caller.value.subject, node: caller.value.node };
  if (!call.request.ok) {
    log.warn({ ...who, reason: call.request.error }, 'certificate refused: malformed request');
    return refuse(grpc.status.INVALID_ARGUMENT, call.request.error);
  }
  const issued = await issue(options, caller.value, call.request.value);
  if (!issued.ok) {
    log.warn({ ...who, identity: issued.error.identity, code: grpc.status[issued.error.code], reason: issued.error.message }, 'certificate refused');
    return issued;
  }
  const leaf = new X509Certificate(issued.value.chain[0]!);
  log.info({ ...who, identity: issued.value.identity, serial: leaf.serialNumber, notAfter: leaf.validTo }, 'certificate issued');
  return ok({ certChain: issued.value.chain });
}

export function addCertificateService(server: grpc.Server, options: CertServiceOptions): void {
  server.addService(istioCertificateService, {
    CreateCertificate: (call: grpc.ServerUnaryCall<Result<IstioCertificateRequest, string>, IstioCertificateResponse>, callback: grpc.sendUnaryData<IstioCertificateResponse>) => {
      createCertificate(options, call).then(
        (result) => result.ok ? callback(null, result.value) : callback({ code: result.error.code, details: result.error.message }),
        (error: Error) => {
          log.error({ peer: call.getPeer(), error: error.message }, 'certificate request failed inside the control plane');
          callback({ code: grpc.status.INTERNAL, details: 'the control plane failed to handle the request; see its log' });
        },
      );
    },
  });
}
