/**
 * How an agent's gRPC channels to the control plane verify it: against the trust bundle, and by the
 * host it dials. Dialed by IP address, grpc-js would send that address as the TLS server name (SNI),
 * which RFC 6066 forbids and Node reports with a DEP0123 warning on every connection; here the
 * server name is a fixed DNS-shaped label instead (the control plane presents one certificate
 * whatever it is sent), and the certificate is still checked against the dialed IP (its IP SANs).
 */
import * as grpc from '@grpc/grpc-js';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { isIP } from 'node:net';

/** The TLS server name sent when the control plane is dialed by IP: SNI only, never what is verified. */
export const IP_DIAL_SERVER_NAME = 'weft-controlplane';

/** The host of `host:port` or `[v6]:port` (the address as given to --control-plane). */
export function dialedHost(address: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(address);
  if (bracketed) return bracketed[1]!;
  const colon = address.lastIndexOf(':');
  // One colon: host:port; more: an IPv6 literal without brackets and without a port.
  return colon > 0 && address.indexOf(':') === colon ? address.slice(0, colon) : address;
}

/** Credentials and channel options for a channel to the control plane at `address`, trusting `caPem`. */
export function controlPlaneTls(address: string, caPem: string): { credentials: grpc.ChannelCredentials; options: grpc.ChannelOptions } {
  const host = dialedHost(address);
  if (isIP(host) === 0) return { credentials: grpc.credentials.createSsl(Buffer.from(caPem)), options: {} };
  const verify = (_name: string, cert: PeerCertificate): Error | undefined => checkServerIdentity(host, cert);
  return {
    credentials: grpc.credentials.createSsl(Buffer.from(caPem), null, null, { checkServerIdentity: verify }),
    options: { 'grpc.ssl_target_name_override': IP_DIAL_SERVER_NAME },
  };
}
