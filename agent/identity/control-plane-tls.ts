/**
 * How an agent's gRPC channels to the control plane verify it: against the trust bundle, and by the
 * host it dials. Dialed by IP address, the IP would be the TLS server name (SNI), which RFC 6066
 * forbids and Node reports with a DEP0123 warning on every connection; here the server name is a
 * fixed DNS-shaped label instead (the control plane presents one certificate whatever it is sent),
 * and the certificate is still checked against the dialed IP (its IP SANs).
 */
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { isIP } from 'node:net';
import type { GrpcTarget } from '../core/grpc-client';

/** The TLS server name sent when the control plane is dialed by IP: SNI only, never what is verified. */
export const IP_DIAL_SERVER_NAME = 'weft-controlplane';

/** gRPC's port when the address names none. */
const DEFAULT_PORT = 443;

/** `host:port`, `[v6]:port`, `[v6]`, a bare IPv6 address or a bare host: its host and port (443 when none). */
export function splitAddress(address: string): { host: string; port: number } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(address);
  if (bracketed) return { host: bracketed[1]!, port: bracketed[2] === undefined ? DEFAULT_PORT : Number(bracketed[2]) };
  const colon = address.lastIndexOf(':');
  // One colon: host:port; more: an IPv6 literal without brackets and without a port.
  if (colon > 0 && address.indexOf(':') === colon) return { host: address.slice(0, colon), port: Number(address.slice(colon + 1)) };
  return { host: address, port: DEFAULT_PORT };
}

/** `--control-plane`'s host and port; throws a message naming the flag for an address that has no valid port. */
export function parseControlPlaneAddress(address: string): { host: string; port: number } {
  const parsed = splitAddress(address);
  if (parsed.host === '' || (parsed.host.includes(':') && isIP(parsed.host) !== 6) || !Number.isInteger(parsed.port) || parsed.port <= 0 || parsed.port > 65535) {
    throw new Error(`--control-plane ${JSON.stringify(address)}: expected host:port or [IPv6]:port, with a port of 1-65535`);
  }
  if (!URL.canParse(`https://${parsed.host.includes(':') ? `[${parsed.host}]` : parsed.host}:${parsed.port}`)) {
    throw new Error(`--control-plane ${JSON.stringify(address)}: ${JSON.stringify(parsed.host)} is not a host name or an IP address`);
  }
  return parsed;
}

/** Where a channel to the control plane at `address` dials, trusting `caPem` only. */
export function controlPlaneTls(address: string, caPem: string): GrpcTarget {
  const { host, port } = parseControlPlaneAddress(address);
  if (isIP(host) === 0) return { host, port, ca: caPem, servername: host };
  const verify = (_name: string, cert: PeerCertificate): Error | undefined => checkServerIdentity(host, cert);
  return { host, port, ca: caPem, servername: IP_DIAL_SERVER_NAME, checkServerIdentity: verify };
}
