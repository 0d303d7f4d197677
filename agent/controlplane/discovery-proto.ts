import * as protobuf from 'protobufjs';
import { err, ok, type Result } from '../core/result';
import type { PodInfo } from '../config/objects';
import { keyOf, resourceId, RESOURCE_KINDS, type Resource, type ResourceKind } from './discovery-resources';

/**
 * `weft.discovery.v2.Discovery/Watch`, server-streaming, protobuf (schema below, parsed once at
 * load; no generated code). The response is shaped like Envoy's DeltaDiscoveryResponse: resources
 * upserted by kind and key, keys removed, the version the state has after applying it, the
 * control plane's epoch (one per control-plane process), and whether it is the full state.
 *
 * Pods, the kind that scales with the cluster and changes most, travel as a protobuf message;
 * every other kind as the JSON of the Snapshot's own object in a `bytes` field (measured and
 * argued in docs/discovery.md). The decoder takes a JSON body for any kind, Pods included, so the
 * encoding of a kind can change on the control plane without the agents. Converted once, at the edge: past decodeDeltaResponse nothing sees
 * protobuf.
 */
export const WATCH_V2_PATH = '/weft.discovery.v2.Discovery/Watch';

const SCHEMA = `
syntax = "proto3";
package weft.discovery.v2;

message WatchRequest {
  string node = 1;
  // A resume: the epoch and version of the last response the agent applied. Empty/0: none.
  string control_plane_epoch = 2;
  uint64 version = 3;
}

message Pod {
  string namespace = 1;
  string name = 2;
  map<string, string> labels = 3;
  map<string, string> annotations = 4;
  string node_name = 5;
  string service_account = 6;
  repeated string ips = 7;
  optional string cgroup_path = 8;
  optional string uid = 9;
  optional bool ready = 10;
  optional bool terminating = 11;
  map<string, uint32> container_ports = 12;
}

message Resource {
  string kind = 1;
  string key = 2;
  oneof body {
    Pod pod = 3;
    bytes json = 4;
  }
}

message ResourceName {
  string kind = 1;
  string key = 2;
}

message DeltaDiscoveryResponse {
  // The version the agent's state has once this response is applied.
  uint64 system_version = 1;
  string control_plane_epoch = 2;
  // The resources are the whole state: whatever the agent holds and is not listed is gone.
  bool full_state = 3;
  // A delta applies to the state at exactly this version of this epoch; 0 with full_state.
  uint64 base_version = 4;
  repeated Resource resources = 5;
  repeated ResourceName removed_resources = 6;
  // More responses of the same sequence follow (same system_version, epoch, full_state,
  // base_version): a full state, or a delta larger than a chunk, is sent as several responses,
  // and applied once the last (more = false) has arrived (discovery-chunks.ts).
  bool more = 7;
}
`;

const root = protobuf.parse(SCHEMA, { keepCase: false }).root;
const WatchRequestType = root.lookupType('weft.discovery.v2.WatchRequest');
const ResourceType = root.lookupType('weft.discovery.v2.Resource');
const ResponseType = root.lookupType('weft.discovery.v2.DeltaDiscoveryResponse');
/** Field number of DeltaDiscoveryResponse.resources, wire type 2 (length-delimited). */
const RESOURCES_TAG = (5 << 3) | 2;

export interface WatchRequestV2 {
  node: string;
  resume?: { epoch: string; version: number };
}

export interface ResourceName {
  kind: ResourceKind;
  key: string;
}

export interface DeltaResponse {
  systemVersion: number;
  epoch: string;
  fullState: boolean;
  /** 0 with fullState. */
  baseVersion: number;
  resources: Resource[];
  removed: ResourceName[];
  /** A chunk of a sequence that continues: set (true) on every chunk but the last; absent otherwise. */
  more?: true;
}

/** Decoded messages as protobufjs gives them: absent optional fields are null, uint64 a Long (or a number). */
interface PodMessage {
  namespace: string; name: string; labels: Record<string, string>; annotations: Record<string, string>;
  nodeName: string; serviceAccount: string; ips: string[];
  cgroupPath: string | null; uid: string | null; ready: boolean | null; terminating: boolean | null;
  containerPorts: Record<string, number>;
}
interface ResourceMessage { kind: string; key: string; pod: PodMessage | null; json: Uint8Array | null }
interface ResponseMessage {
  systemVersion: number | protobuf.Long; controlPlaneEpoch: string; fullState: boolean; baseVersion: number | protobuf.Long;
  resources: ResourceMessage[]; removedResources: Array<{ kind: string; key: string }>; more: boolean;
}

const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, arrays: true, objects: true, bytes: Buffer as unknown as typeof String };

export function encodeWatchRequestV2(request: WatchRequestV2): Buffer {
  const message = WatchRequestType.fromObject({
    node: request.node,
    controlPlaneEpoch: request.resume?.epoch ?? '',
    version: request.resume?.version ?? 0,
  });
  return Buffer.from(WatchRequestType.encode(message).finish());
}

export function decodeWatchRequestV2(bytes: Buffer): Result<WatchRequestV2, string> {
  let o: { node?: string; controlPlaneEpoch?: string; version?: number };
  try {
    o = WatchRequestType.toObject(WatchRequestType.decode(bytes), TO_OBJECT) as typeof o;
  } catch (e) {
    return err(`the v2 Watch request is not a weft.discovery.v2.WatchRequest: ${(e as Error).message}`);
  }
  if (typeof o.node !== 'string' || o.node === '') return err('the v2 Watch request names no node (field node)');
  const version = o.version ?? 0;
  if (!Number.isSafeInteger(version) || version < 0) return err(`the v2 Watch request's version ${String(version)} is not a safe integer`);
  const epoch = o.controlPlaneEpoch ?? '';
  if ((epoch === '') !== (version === 0)) return err('the v2 Watch request must give both control_plane_epoch and version to resume, or neither');
  return ok(epoch === '' ? { node: o.node } : { node: o.node, resume: { epoch, version } });
}

function podMessage(pod: PodInfo): Record<string, unknown> {
  const m: Record<string, unknown> = {
    namespace: pod.namespace, name: pod.name, labels: pod.labels, annotations: pod.annotations,
    nodeName: pod.nodeName, serviceAccount: pod.serviceAccount, ips: pod.ips,
  };
  if (pod.cgroupPath !== undefined) m.cgroupPath = pod.cgroupPath;
  if (pod.uid !== undefined) m.uid = pod.uid;
  if (pod.ready !== undefined) m.ready = pod.ready;
  if (pod.terminating !== undefined) m.terminating = pod.terminating;
  if (pod.containerPorts !== undefined) m.containerPorts = pod.containerPorts;
  return m;
}

/** A decoded Pod message as PodInfo: read from the message itself (no toObject copy; a full state holds thousands). */
function podInfo(m: PodMessage): PodInfo {
  const pod: PodInfo = {
    namespace: m.namespace, name: m.name, labels: m.labels, annotations: m.annotations,
    nodeName: m.nodeName, serviceAccount: m.serviceAccount, ips: m.ips,
  };
  if (m.cgroupPath != null) pod.cgroupPath = m.cgroupPath;
  if (m.uid != null) pod.uid = m.uid;
  if (m.ready != null) pod.ready = m.ready;
  if (m.terminating != null) pod.terminating = m.terminating;
  for (const _ in m.containerPorts) {
    pod.containerPorts = m.containerPorts;
    break;
  }
  return pod;
}

/** One Resource message, encoded: pods as the Pod message, other kinds as JSON bytes. */
export function encodeResource(r: Resource): Uint8Array {
  const body = r.kind === 'Pod' ? { pod: podMessage(r.value as PodInfo) } : { json: Buffer.from(JSON.stringify(r.value), 'utf8') };
  return ResourceType.encode(ResourceType.fromObject({ kind: r.kind, key: r.key, ...body })).finish();
}

/** An encoded Resource as an entry of DeltaDiscoveryResponse.resources: tag, length, message. */
export function frameResource(encoded: Uint8Array): Buffer {
  const prefix = protobuf.Writer.create().uint32(RESOURCES_TAG).uint32(encoded.length).finish();
  return Buffer.concat([prefix, encoded]);
}

/** A response from its header and resources encoded with encodeResource. */
export function encodeDeltaResponse(header: Omit<DeltaResponse, 'resources'>, resources: readonly Uint8Array[]): Buffer {
  return encodeDeltaResponseFramed(header, resources.map(frameResource));
}

/**
 * A response from its header and entries already framed (frameResource): a repeated field is its
 * entries one after another, so a full state is the header then the cached entries, concatenated.
 */
export function encodeDeltaResponseFramed(header: Omit<DeltaResponse, 'resources'>, entries: readonly Uint8Array[]): Buffer {
  const head = ResponseType.encode(ResponseType.fromObject({
    systemVersion: header.systemVersion,
    controlPlaneEpoch: header.epoch,
    fullState: header.fullState,
    baseVersion: header.baseVersion,
    removedResources: header.removed,
    more: header.more === true,
  })).finish();
  return Buffer.concat([head, ...entries]);
}

const KINDS = new Set<string>(RESOURCE_KINDS);

function resourceFrom(o: ResourceMessage, i: number): Result<Resource, string> {
  const where = `resources[${i}]`;
  if (!KINDS.has(o.kind)) return err(`${where}.kind ${JSON.stringify(o.kind)} is not a resource kind (${RESOURCE_KINDS.join(', ')})`);
  const kind = o.kind as ResourceKind;
  const key = o.key;
  let value: object;
  if (o.pod != null) {
    if (kind !== 'Pod') return err(`${where} (${kind} ${key}) has a pod body`);
    value = podInfo(o.pod);
  } else {
    // Any kind may come as JSON, Pods too: the control plane can change a kind's encoding without the agents.
    if (o.json == null) return err(`${where} (${kind} ${key}) has no body`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(o.json.buffer, o.json.byteOffset, o.json.byteLength).toString('utf8'));
    } catch (e) {
      return err(`${where} (${kind} ${key}).json is not JSON: ${(e as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return err(`${where} (${kind} ${key}).json is not a JSON object`);
    value = parsed;
  }
  const own = keyOf(kind, value);
  if (own !== key) return err(`${where} is keyed ${JSON.stringify(key)} but its ${kind} body is ${own === undefined ? 'unnamed' : JSON.stringify(own)}`);
  return ok({ kind, key, value });
}

/** A uint64 as a number, refused past 2^53 (versions are milliseconds since the epoch, far below). */
function versionOf(value: number | protobuf.Long, field: string): Result<number, string> {
  if (typeof value === 'number') return ok(value);
  const high = value.high >>> 0;
  return high < 0x200000 ? ok(high * 2 ** 32 + (value.low >>> 0)) : err(`${field} ${value.toString()} is past 2^53`);
}

/** The agent's edge: a response checked and converted, or why it was refused. Never throws. */
export function decodeDeltaResponse(bytes: Buffer): Result<DeltaResponse, string> {
  let o: ResponseMessage;
  try {
    o = ResponseType.decode(bytes) as unknown as ResponseMessage;
  } catch (e) {
    return err(`a response that is not a weft.discovery.v2.DeltaDiscoveryResponse: ${(e as Error).message}`);
  }
  const systemVersion = versionOf(o.systemVersion, 'system_version');
  if (!systemVersion.ok) return systemVersion;
  if (systemVersion.value === 0) return err('a response without system_version');
  const baseVersion = versionOf(o.baseVersion, 'base_version');
  if (!baseVersion.ok) return baseVersion;
  const epoch = o.controlPlaneEpoch;
  if (epoch === '') return err('a response without control_plane_epoch');
  const fullState = o.fullState;
  if (fullState && baseVersion.value !== 0) return err('a full-state response with a base_version');
  if (!fullState && baseVersion.value === 0) return err('a delta response without base_version');
  const seen = new Set<string>();
  const resources: Resource[] = [];
  for (let i = 0; i < o.resources.length; i++) {
    const r = resourceFrom(o.resources[i]!, i);
    if (!r.ok) return r;
    const id = resourceId(r.value.kind, r.value.key);
    if (seen.has(id)) return err(`resources[${i}]: ${id} is listed twice`);
    seen.add(id);
    resources.push(r.value);
  }
  const removed: ResourceName[] = [];
  for (const [i, raw] of o.removedResources.entries()) {
    if (!KINDS.has(raw.kind)) return err(`removed_resources[${i}].kind ${JSON.stringify(raw.kind)} is not a resource kind`);
    const id = resourceId(raw.kind as ResourceKind, raw.key);
    if (seen.has(id)) return err(`removed_resources[${i}]: ${id} is also upserted or removed twice`);
    seen.add(id);
    removed.push({ kind: raw.kind as ResourceKind, key: raw.key });
  }
  if (fullState && removed.length > 0) return err('a full-state response with removed_resources');
  const m: DeltaResponse = { systemVersion: systemVersion.value, epoch, fullState, baseVersion: baseVersion.value, resources, removed };
  if (o.more) m.more = true;
  return ok(m);
}
