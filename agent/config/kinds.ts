import { convertAuthorizationPolicy } from '../policy/convert';
import { convertGrpcRoute } from '../route/convert-grpc';
import { convertHttpRoute } from '../route/convert-http';
import { convertTrafficPolicy } from '../traffic/convert';
import type { Checker, Fields } from './checker';
import { convertEndpointSlice, ENDPOINT_SLICE_FIELDS } from './endpoint-slice';
import type { Metadata } from './metadata';
import { convertNamespace } from './namespace';
import { convertNode } from './node';
import { objectKey, type Snapshot } from './objects';
import { convertPeerAuthentication } from './peer-authentication';
import { convertPod } from './pod';
import { convertProxyConfig } from './proxy-config';
import { convertService } from './service';

/** A snapshot being assembled, with the facts cross-object checks need. */
export interface Draft {
  snapshot: Snapshot;
  /** `ns/name` of host-network pods: they share their node's address, so they may share IPs. */
  hostNetworkPods: Set<string>;
}

export interface Kind {
  apiVersion: string;
  namespaced: boolean;
  /** The object's top-level fields, when they are not `apiVersion, kind, metadata, spec, status` (an EndpointSlice has no spec). */
  fields?: ReadonlySet<string>;
  /** Checks the object; the returned step adds it to a draft (parse.ts runs it only if the checks passed). */
  read(c: Checker, obj: Fields, meta: Metadata): (into: Draft) => void;
}

function kind<T>(
  apiVersion: string,
  namespaced: boolean,
  convert: (c: Checker, obj: Fields, meta: Metadata) => T,
  add: (into: Draft, value: T) => void,
): Kind {
  return {
    apiVersion,
    namespaced,
    read: (c, obj, meta) => {
      const value = convert(c, obj, meta);
      return (into) => add(into, value);
    },
  };
}

export const KINDS: Readonly<Record<string, Kind>> = {
  Namespace: kind('v1', false, convertNamespace, (into, ns) => into.snapshot.namespaces.push(ns)),
  Node: kind('v1', false, convertNode, (into, node) => into.snapshot.nodes.push(node)),
  Pod: kind('v1', true, convertPod, (into, { pod, hostNetwork }) => {
    into.snapshot.pods.push(pod);
    if (hostNetwork) into.hostNetworkPods.add(objectKey(pod));
  }),
  Service: kind('v1', true, convertService, (into, svc) => into.snapshot.services.push(svc)),
  PeerAuthentication: kind('security.weft.dev/v1', true, convertPeerAuthentication, (into, pa) => into.snapshot.peerAuthentications.push(pa)),
  AuthorizationPolicy: kind('security.weft.dev/v1', true, convertAuthorizationPolicy, (into, ap) => into.snapshot.authorizationPolicies.push(ap)),
  EndpointSlice: {
    ...kind('discovery.k8s.io/v1', true, convertEndpointSlice, (into, slice) => (into.snapshot.endpointSlices ??= []).push(slice)),
    fields: ENDPOINT_SLICE_FIELDS,
  },
  ProxyConfig: kind('config.weft.dev/v1', false, convertProxyConfig, (into, config) => { into.snapshot.proxyConfig = config; }),
  HTTPRoute: kind('gateway.networking.k8s.io/v1', true, convertHttpRoute, (into, route) => (into.snapshot.httpRoutes ??= []).push(route)),
  GRPCRoute: kind('gateway.networking.k8s.io/v1', true, convertGrpcRoute, (into, route) => (into.snapshot.grpcRoutes ??= []).push(route)),
  TrafficPolicy: kind('networking.weft.dev/v1', true, convertTrafficPolicy, (into, tp) => { (into.snapshot.trafficPolicies ??= []).push(tp); }),
};
