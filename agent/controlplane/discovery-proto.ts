import { err, ok, type Result } from '../core/result';
import { expectWire, fieldOf, Reader, setOwn, WireType, wireTypeOf, Writer } from '../core/protobuf-wire';
import type { PodInfo } from '../config/objects';
import { keyOf, resourceId, RESOURCE_KINDS, type Resource, type ResourceKind } from './discovery-resources';

/**
 * `weft.discovery.v2.Discovery/Watch`, server-streaming, protobuf (the contract below, coded by
 * hand over core/protobuf-wire.ts: no generated code, no schema parsed at load). The response is shaped like Envoy's DeltaDiscoveryResponse: resources
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

/*
 * The wire contract (proto3), encoded and decoded by hand below:
 *
 * syntax = "proto3";
 * package weft.discovery.v2;
 *
 * message WatchRequest {
 *   string node = 1;
 *   // A resume: the epoch and version of the last response the agent applied. Empty/0: none.
 *   string control_plane_epoch = 2;
 *   uint64 version = 3;
 * }
 *
 * message Pod {
 *   string namespace = 1;
 *   string name = 2;
 *   map<string, string> labels = 3;
 *   map<string, string> annotations = 4;
 *   string node_name = 5;
 *   string service_account = 6;
 *   repeated string ips = 7;
 *   optional string cgroup_path = 8;
 *   optional string uid = 9;
 *   optional bool ready = 10;
 *   optional bool terminating = 11;
 *   map<string, uint32> container_ports = 12;
 * }
 *
 * message Resource {
 *   string kind = 1;
 *   string key = 2;
 *   oneof body {
 *     Pod pod = 3;
 *     bytes json = 4;
 *   }
 * }
 *
 * message ResourceName {
 *   string kind = 1;
 *   string key = 2;
 * }
 *
 * message DeltaDiscoveryResponse {
 *   // The version the agent's state has once this response is applied.
 *   uint64 system_version = 1;
 *   string control_plane_epoch = 2;
 *   // The resources are the whole state: whatever the agent holds and is not listed is gone.
 *   bool full_state = 3;
 *   // A delta applies to the state at exactly this version of this epoch; 0 with full_state.
 *   uint64 base_version = 4;
 *   repeated Resource resources = 5;
 *   repeated ResourceName removed_resources = 6;
 *   // More responses of the same sequence follow (same system_version, epoch, full_state,
 *   // base_version): a full state, or a delta larger than a chunk, is sent as several responses,
 *   // and applied once the last (more = false) has arrived (discovery-chunks.ts).
 *   bool more = 7;
 * }
 */

/** Field number of DeltaDiscoveryResponse.resources. */
const RESOURCES_FIELD = 5;

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

/** What decoding reads, before it is checked: absent fields at their proto3 defaults. */
interface ResourceMessage { kind: string; key: string; pod: PodInfo | undefined; json: Uint8Array | undefined }
interface ResponseMessage {
  systemVersion: number; controlPlaneEpoch: string; fullState: boolean; baseVersion: number;
  resources: ResourceMessage[]; removedResources: Array<{ kind: string; key: string }>; more: boolean;
}

export function encodeWatchRequestV2(request: WatchRequestV2): Buffer {
  w.reset().string(1, request.node);
  if (request.resume) w.string(2, request.resume.epoch).uint(3, request.resume.version);
  return w.finish();
}

/** Runs a decoder; what it throws (a malformed message) becomes the refusal, named by `what`. */
function decoded<T>(what: string, decode: () => T): Result<T, string> {
  try {
    return ok(decode());
  } catch (e) {
    return err(`${what}: ${(e as Error).message}`);
  }
}

export function decodeWatchRequestV2(bytes: Buffer): Result<WatchRequestV2, string> {
  const o = decoded('the v2 Watch request is not a weft.discovery.v2.WatchRequest', () => {
    const r = new Reader(bytes);
    const m = { node: '', controlPlaneEpoch: '', version: 0 };
    while (!r.done()) {
      const t = r.tag();
      const field = fieldOf(t);
      const wireType = wireTypeOf(t);
      if (field === 1) { expectWire(wireType, WireType.LengthDelimited, 'node'); m.node = r.string(); }
      else if (field === 2) { expectWire(wireType, WireType.LengthDelimited, 'control_plane_epoch'); m.controlPlaneEpoch = r.string(); }
      else if (field === 3) { expectWire(wireType, WireType.Varint, 'version'); m.version = r.number(`the v2 Watch request's version`); }
      else r.skip(wireType);
    }
    return m;
  });
  if (!o.ok) return o;
  const { node, controlPlaneEpoch: epoch, version } = o.value;
  if (node === '') return err('the v2 Watch request names no node (field node)');
  if ((epoch === '') !== (version === 0)) return err('the v2 Watch request must give both control_plane_epoch and version to resume, or neither');
  return ok(epoch === '' ? { node } : { node, resume: { epoch, version } });
}

/** One writer for every message this module encodes: each encoder starts with reset(), and finish() copies out. */
const w = new Writer();

/**
 * A Pod message's fields, in field order. A map is a repeated entry message: key = 1, value = 2.
 * As lenient as protobufjs' fromObject was: a field that is absent (or null) is left out, any other
 * value is written as the field's type (String(), Boolean(), uint32), so a body of another shape
 * reaches the decoder, which judges it, instead of throwing in the control plane's publish.
 */
function writePod(pod: PodInfo): void {
  const p = pod as unknown as Record<string, unknown>;
  writeString(1, p.namespace);
  writeString(2, p.name);
  writeMap(3, p.labels, (v) => w.string(2, String(v)));
  writeMap(4, p.annotations, (v) => w.string(2, String(v)));
  writeString(5, p.nodeName);
  writeString(6, p.serviceAccount);
  if (Array.isArray(p.ips)) for (const ip of p.ips) w.string(7, String(ip));
  // proto3 `optional`: present whenever set, defaults included.
  writeString(8, p.cgroupPath);
  writeString(9, p.uid);
  if (p.ready != null) w.bool(10, Boolean(p.ready));
  if (p.terminating != null) w.bool(11, Boolean(p.terminating));
  writeMap(12, p.containerPorts, (v) => w.uint(2, Number(v) >>> 0));
}

function writeString(field: number, v: unknown): void {
  if (v != null) w.string(field, String(v));
}

function writeMap(field: number, map: unknown, writeValue: (v: unknown) => void): void {
  if (typeof map !== 'object' || map === null) return;
  for (const [k, v] of Object.entries(map)) {
    const at = w.fork(field);
    w.string(1, k);
    writeValue(v);
    w.join(at);
  }
}

/** A map<string, V> entry (key = 1, value = 2; either may be absent: its default), read where the reader stands into `into`. */
function readEntry<V>(r: Reader, into: Record<string, V>, what: string, readValue: (r: Reader, wireType: number) => V, empty: V): void {
  const outer = r.enter();
  let key = '';
  let value = empty;
  while (!r.done()) {
    const t = r.tag();
    if (fieldOf(t) === 1) { expectWire(wireTypeOf(t), WireType.LengthDelimited, `${what} key`); key = r.string(); }
    else if (fieldOf(t) === 2) value = readValue(r, wireTypeOf(t));
    else r.skip(wireTypeOf(t));
  }
  r.leave(outer);
  setOwn(into, key, value);
}

const stringValue = (what: string) => (r: Reader, wireType: number): string => {
  expectWire(wireType, WireType.LengthDelimited, what);
  return r.string();
};
const labelValue = stringValue('Pod.labels value');
const annotationValue = stringValue('Pod.annotations value');
const portValue = (r: Reader, wireType: number): number => {
  expectWire(wireType, WireType.Varint, 'Pod.container_ports value');
  return Number(BigInt.asUintN(32, r.varint()));
};

/** A Pod message as PodInfo, read straight from the wire where the reader stands (a full state holds thousands). */
function readPod(r: Reader): PodInfo {
  const outer = r.enter();
  const pod: PodInfo = { namespace: '', name: '', labels: {}, annotations: {}, nodeName: '', serviceAccount: '', ips: [] };
  let ports: Record<string, number> | undefined;
  while (!r.done()) {
    const t = r.tag();
    const wireType = wireTypeOf(t);
    switch (fieldOf(t)) {
      case 1: expectWire(wireType, WireType.LengthDelimited, 'Pod.namespace'); pod.namespace = r.string(); break;
      case 2: expectWire(wireType, WireType.LengthDelimited, 'Pod.name'); pod.name = r.string(); break;
      case 3: {
        expectWire(wireType, WireType.LengthDelimited, 'Pod.labels');
        readEntry(r, pod.labels, 'Pod.labels', labelValue, '');
        break;
      }
      case 4: {
        expectWire(wireType, WireType.LengthDelimited, 'Pod.annotations');
        readEntry(r, pod.annotations, 'Pod.annotations', annotationValue, '');
        break;
      }
      case 5: expectWire(wireType, WireType.LengthDelimited, 'Pod.node_name'); pod.nodeName = r.string(); break;
      case 6: expectWire(wireType, WireType.LengthDelimited, 'Pod.service_account'); pod.serviceAccount = r.string(); break;
      case 7: expectWire(wireType, WireType.LengthDelimited, 'Pod.ips'); pod.ips.push(r.string()); break;
      case 8: expectWire(wireType, WireType.LengthDelimited, 'Pod.cgroup_path'); pod.cgroupPath = r.string(); break;
      case 9: expectWire(wireType, WireType.LengthDelimited, 'Pod.uid'); pod.uid = r.string(); break;
      case 10: expectWire(wireType, WireType.Varint, 'Pod.ready'); pod.ready = r.bool(); break;
      case 11: expectWire(wireType, WireType.Varint, 'Pod.terminating'); pod.terminating = r.bool(); break;
      case 12: {
        expectWire(wireType, WireType.LengthDelimited, 'Pod.container_ports');
        readEntry(r, (ports ??= {}), 'Pod.container_ports', portValue, 0);
        break;
      }
      default: r.skip(wireType);
    }
  }
  r.leave(outer);
  if (ports) pod.containerPorts = ports;
  return pod;
}

/** One Resource message, encoded: pods as the Pod message, other kinds as JSON bytes. */
export function encodeResource(r: Resource): Uint8Array {
  w.reset().string(1, r.kind).string(2, r.key);
  if (r.kind === 'Pod') {
    const at = w.fork(3);
    writePod(r.value as PodInfo);
    w.join(at);
  } else {
    w.bytes(4, Buffer.from(JSON.stringify(r.value), 'utf8'));
  }
  return w.finish();
}

/** An encoded Resource as an entry of DeltaDiscoveryResponse.resources: tag, length, message. */
export function frameResource(encoded: Uint8Array): Buffer {
  return w.reset().bytes(RESOURCES_FIELD, encoded).finish();
}

/** A response from its header and resources encoded with encodeResource. */
export function encodeDeltaResponse(header: Omit<DeltaResponse, 'resources'>, resources: readonly Uint8Array[]): Buffer {
  return encodeDeltaResponseFramed(header, resources.map(frameResource));
}

/**
 * A response from its header and entries already framed (frameResource): a repeated field is its
 * entries one after another, so a full state is the header then the cached entries, concatenated.
 * Fields at their proto3 default are left out, as protobuf encoders do.
 */
export function encodeDeltaResponseFramed(header: Omit<DeltaResponse, 'resources'>, entries: readonly Uint8Array[]): Buffer {
  w.reset();
  if (header.systemVersion !== 0) w.uint(1, header.systemVersion);
  if (header.epoch !== '') w.string(2, header.epoch);
  if (header.fullState) w.bool(3, true);
  if (header.baseVersion !== 0) w.uint(4, header.baseVersion);
  for (const r of header.removed) {
    const at = w.fork(6);
    w.string(1, r.kind).string(2, r.key).join(at);
  }
  if (header.more === true) w.bool(7, true);
  return Buffer.concat([w.finish(), ...entries]);
}

function readResource(r: Reader): ResourceMessage {
  const outer = r.enter();
  const m: ResourceMessage = { kind: '', key: '', pod: undefined, json: undefined };
  while (!r.done()) {
    const t = r.tag();
    const field = fieldOf(t);
    const wireType = wireTypeOf(t);
    // `body` is a oneof: the last of its members on the wire wins.
    if (field === 1) { expectWire(wireType, WireType.LengthDelimited, 'Resource.kind'); m.kind = r.string(); }
    else if (field === 2) { expectWire(wireType, WireType.LengthDelimited, 'Resource.key'); m.key = r.string(); }
    else if (field === 3) { expectWire(wireType, WireType.LengthDelimited, 'Resource.pod'); m.pod = readPod(r); m.json = undefined; }
    else if (field === 4) { expectWire(wireType, WireType.LengthDelimited, 'Resource.json'); m.json = r.bytes(); m.pod = undefined; }
    else r.skip(wireType);
  }
  r.leave(outer);
  return m;
}

function readResourceName(r: Reader): { kind: string; key: string } {
  const outer = r.enter();
  const m = { kind: '', key: '' };
  while (!r.done()) {
    const t = r.tag();
    if (fieldOf(t) === 1) { expectWire(wireTypeOf(t), WireType.LengthDelimited, 'ResourceName.kind'); m.kind = r.string(); }
    else if (fieldOf(t) === 2) { expectWire(wireTypeOf(t), WireType.LengthDelimited, 'ResourceName.key'); m.key = r.string(); }
    else r.skip(wireTypeOf(t));
  }
  r.leave(outer);
  return m;
}

function readResponse(bytes: Uint8Array): ResponseMessage {
  const r = new Reader(bytes);
  const m: ResponseMessage = { systemVersion: 0, controlPlaneEpoch: '', fullState: false, baseVersion: 0, resources: [], removedResources: [], more: false };
  while (!r.done()) {
    const t = r.tag();
    const wireType = wireTypeOf(t);
    switch (fieldOf(t)) {
      case 1: expectWire(wireType, WireType.Varint, 'system_version'); m.systemVersion = r.number('system_version'); break;
      case 2: expectWire(wireType, WireType.LengthDelimited, 'control_plane_epoch'); m.controlPlaneEpoch = r.string(); break;
      case 3: expectWire(wireType, WireType.Varint, 'full_state'); m.fullState = r.bool(); break;
      case 4: expectWire(wireType, WireType.Varint, 'base_version'); m.baseVersion = r.number('base_version'); break;
      case 5: expectWire(wireType, WireType.LengthDelimited, 'resources'); m.resources.push(readResource(r)); break;
      case 6: expectWire(wireType, WireType.LengthDelimited, 'removed_resources'); m.removedResources.push(readResourceName(r)); break;
      case 7: expectWire(wireType, WireType.Varint, 'more'); m.more = r.bool(); break;
      default: r.skip(wireType);
    }
  }
  return m;
}

const KINDS = new Set<string>(RESOURCE_KINDS);

function resourceFrom(o: ResourceMessage, i: number): Result<Resource, string> {
  const where = `resources[${i}]`;
  if (!KINDS.has(o.kind)) return err(`${where}.kind ${JSON.stringify(o.kind)} is not a resource kind (${RESOURCE_KINDS.join(', ')})`);
  const kind = o.kind as ResourceKind;
  const key = o.key;
  let value: object;
  if (o.pod !== undefined) {
    if (kind !== 'Pod') return err(`${where} (${kind} ${key}) has a pod body`);
    value = o.pod;
  } else {
    // Any kind may come as JSON, Pods too: the control plane can change a kind's encoding without the agents.
    if (o.json === undefined) return err(`${where} (${kind} ${key}) has no body`);
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

/** The agent's edge: a response checked and converted, or why it was refused. Never throws. */
export function decodeDeltaResponse(bytes: Buffer): Result<DeltaResponse, string> {
  const decodedResponse = decoded('a response that is not a weft.discovery.v2.DeltaDiscoveryResponse', () => readResponse(bytes));
  if (!decodedResponse.ok) return decodedResponse;
  const o = decodedResponse.value;
  if (o.systemVersion === 0) return err('a response without system_version');
  const epoch = o.controlPlaneEpoch;
  if (epoch === '') return err('a response without control_plane_epoch');
  const fullState = o.fullState;
  if (fullState && o.baseVersion !== 0) return err('a full-state response with a base_version');
  if (!fullState && o.baseVersion === 0) return err('a delta response without base_version');
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
  const m: DeltaResponse = { systemVersion: o.systemVersion, epoch, fullState, baseVersion: o.baseVersion, resources, removed };
  if (o.more) m.more = true;
  return ok(m);
}
