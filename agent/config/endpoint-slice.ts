import { isIP } from 'node:net';
import { join, type Checker, type Fields } from './checker';
import type { Metadata } from './metadata';
import type { EndpointSliceEndpoint, EndpointSliceInfo, EndpointSlicePort } from './objects';

/**
 * `discovery.k8s.io/v1` EndpointSlice from the config file, checked strictly. An EndpointSlice has
 * no spec: `addressType`, `endpoints` and `ports` sit beside `metadata` (see ENDPOINT_SLICE_FIELDS).
 * Absent conditions take the API's documented defaults (V1EndpointConditions): ready and serving
 * "should be interpreted as true", terminating as false.
 */

/** Label that ties a slice to its Service, set by the EndpointSlice controller (and required here). */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/** The object's own top-level fields. */
export const ENDPOINT_SLICE_FIELDS: ReadonlySet<string> = new Set(['apiVersion', 'kind', 'metadata', 'addressType', 'endpoints', 'ports']);

export const ADDRESS_TYPES = ['IPv4', 'IPv6', 'FQDN'] as const;
const PROTOCOLS = ['TCP', 'UDP', 'SCTP'] as const;
const ENDPOINT = new Set(['addresses', 'conditions', 'hostname', 'nodeName', 'targetRef', 'zone', 'hints', 'deprecatedTopology']);
const CONDITIONS = new Set(['ready', 'serving', 'terminating']);
const TARGET_REF = new Set(['kind', 'name', 'namespace', 'uid', 'apiVersion', 'resourceVersion', 'fieldPath']);
const PORT = new Set(['name', 'port', 'protocol', 'appProtocol']);
/** The API's limit per endpoint. */
const MAX_ADDRESSES = 100;

export function convertEndpointSlice(c: Checker, obj: Fields, meta: Metadata): EndpointSliceInfo {
  const service = meta.labels[SERVICE_NAME_LABEL];
  const serviceField = join('metadata.labels', SERVICE_NAME_LABEL);
  if (service === undefined) c.fail(serviceField, 'must be set: it names the Service whose endpoints these are');
  else c.dnsLabel(service, serviceField);
  const addressType = c.oneOf(obj.addressType, 'addressType', ADDRESS_TYPES);
  return {
    namespace: meta.namespace,
    name: meta.name,
    service: service ?? '',
    addressType: addressType ?? 'IPv4',
    ports: ports(c, obj.ports),
    endpoints: endpoints(c, obj.endpoints, addressType, meta.namespace),
  };
}

/** `endpoints: null` is how `kubectl get -o yaml` shows a slice without endpoints. */
function endpoints(c: Checker, value: unknown, addressType: EndpointSliceInfo['addressType'] | undefined, namespace: string): EndpointSliceEndpoint[] {
  if (value === undefined || value === null) return [];
  const result: EndpointSliceEndpoint[] = [];
  (c.list(value, 'endpoints') ?? []).forEach((entry, i) => {
    const field = join('endpoints', i);
    const raw = c.mapping(entry, field);
    if (!raw) return;
    c.allowOnly(raw, field, ENDPOINT);
    const conditions = c.optionalMapping(raw.conditions, `${field}.conditions`);
    c.allowOnly(conditions, `${field}.conditions`, CONDITIONS);
    const flag = (key: string, absent: boolean): boolean =>
      conditions[key] === undefined || conditions[key] === null ? absent : (c.boolean(conditions[key], join(`${field}.conditions`, key)) ?? absent);
    const endpoint: EndpointSliceEndpoint = {
      addresses: addresses(c, raw.addresses, `${field}.addresses`, addressType),
      ready: flag('ready', true),
      serving: flag('serving', true),
      terminating: flag('terminating', false),
    };
    const nodeName = raw.nodeName === undefined ? undefined : c.dnsSubdomain(raw.nodeName, `${field}.nodeName`);
    if (nodeName !== undefined) endpoint.nodeName = nodeName;
    const pod = targetPod(c, raw.targetRef, `${field}.targetRef`, namespace);
    if (pod !== undefined) endpoint.pod = pod;
    result.push(endpoint);
  });
  return result;
}

/** Addresses of the slice's type; with an invalid addressType (reported already) any IP is taken, to report nothing twice. */
function addresses(c: Checker, value: unknown, field: string, addressType: EndpointSliceInfo['addressType'] | undefined): string[] {
  const list = c.list(value, field);
  if (!list) return [];
  if (list.length === 0 || list.length > MAX_ADDRESSES) c.fail(field, `must hold 1 to ${MAX_ADDRESSES} addresses`);
  const result: string[] = [];
  list.forEach((entry, i) => {
    const at = join(field, i);
    if (addressType === 'FQDN') {
      const name = c.dnsSubdomain(entry, at);
      if (name !== undefined) result.push(name);
      return;
    }
    const ip = c.ip(entry, at);
    if (ip === undefined) return;
    if (addressType !== undefined && isIP(ip) !== (addressType === 'IPv4' ? 4 : 6)) c.fail(at, `${ip} is not an ${addressType} address (addressType is ${addressType}: a dual-stack Service has one slice per family)`);
    else result.push(ip);
  });
  return result;
}

/** The Pod a targetRef names; a targetRef to another kind is carried, not read. */
function targetPod(c: Checker, value: unknown, field: string, namespace: string): string | undefined {
  if (value === undefined) return undefined;
  const ref = c.mapping(value, field);
  if (!ref) return undefined;
  c.allowOnly(ref, field, TARGET_REF);
  const kind = c.optionalString(ref.kind, `${field}.kind`);
  if (ref.namespace !== undefined) {
    const ns = c.dnsLabel(ref.namespace, `${field}.namespace`);
    if (ns !== undefined && ns !== namespace) c.fail(`${field}.namespace`, `"${ns}" must be the EndpointSlice's own namespace "${namespace}"`);
  }
  if (kind !== 'Pod') return undefined;
  return c.dnsSubdomain(ref.name, `${field}.name`);
}

function ports(c: Checker, value: unknown): EndpointSlicePort[] {
  if (value === undefined || value === null) return [];
  const result: EndpointSlicePort[] = [];
  const names = new Map<string, string>();
  (c.list(value, 'ports') ?? []).forEach((entry, i) => {
    const field = join('ports', i);
    const raw = c.mapping(entry, field);
    if (!raw) return;
    c.allowOnly(raw, field, PORT);
    const port: EndpointSlicePort = {
      port: c.port(raw.port, `${field}.port`) ?? 0,
      protocol: raw.protocol === undefined ? 'TCP' : (c.oneOf(raw.protocol, `${field}.protocol`, PROTOCOLS) ?? 'TCP'),
    };
    // '' is the name of the Service's one unnamed port.
    const name = raw.name === undefined || raw.name === '' ? '' : c.dnsLabel(raw.name, `${field}.name`);
    if (name === undefined) return;
    const first = names.get(name);
    if (first !== undefined) c.fail(`${field}.name`, `${name === '' ? 'an unnamed port' : `"${name}"`} is already ${first}: port names are unique within an EndpointSlice`);
    names.set(name, field);
    if (name !== '') port.name = name;
    const appProtocol = c.optionalString(raw.appProtocol, `${field}.appProtocol`);
    if (appProtocol !== undefined) port.appProtocol = appProtocol;
    result.push(port);
  });
  return result;
}
