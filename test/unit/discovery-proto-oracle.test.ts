/**
 * The hand-written discovery v2 codec (agent/controlplane/discovery-proto.ts) against protobufjs,
 * an independent protobuf implementation, over the same contract: whatever one encodes the other
 * decodes to the same message, both ways, for arbitrary pods and response headers. Agents and
 * control planes of either kind (before and after the codec was written by hand) meet during an
 * upgrade, so the wire must be the same protobuf.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as fc from 'fast-check';
import * as protobuf from 'protobufjs';
import type { PodInfo } from '../../agent/config/objects';
import { decodeDeltaResponse, decodeWatchRequestV2, encodeDeltaResponseFramed, encodeResource, encodeWatchRequestV2, frameResource } from '../../agent/controlplane/discovery-proto';

const root = protobuf.parse(`
syntax = "proto3";
package weft.discovery.v2;
message WatchRequest { string node = 1; string control_plane_epoch = 2; uint64 version = 3; }
message Pod {
  string namespace = 1; string name = 2; map<string, string> labels = 3; map<string, string> annotations = 4;
  string node_name = 5; string service_account = 6; repeated string ips = 7; optional string cgroup_path = 8;
  optional string uid = 9; optional bool ready = 10; optional bool terminating = 11; map<string, uint32> container_ports = 12;
}
message Resource { string kind = 1; string key = 2; oneof body { Pod pod = 3; bytes json = 4; } }
message ResourceName { string kind = 1; string key = 2; }
message DeltaDiscoveryResponse {
  uint64 system_version = 1; string control_plane_epoch = 2; bool full_state = 3; uint64 base_version = 4;
  repeated Resource resources = 5; repeated ResourceName removed_resources = 6; bool more = 7;
}`, { keepCase: false }).root;
const WatchRequest = root.lookupType('weft.discovery.v2.WatchRequest');
const Resource = root.lookupType('weft.discovery.v2.Resource');
const Response = root.lookupType('weft.discovery.v2.DeltaDiscoveryResponse');
const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, arrays: true, objects: true, defaults: false, oneofs: false };

const text = fc.string({ unit: 'grapheme', maxLength: 12 });
const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/);
const pod: fc.Arbitrary<PodInfo> = fc.record({
  namespace: name, name, labels: fc.dictionary(name, text, { maxKeys: 4 }), annotations: fc.dictionary(name, text, { maxKeys: 3 }),
  nodeName: name, serviceAccount: name, ips: fc.array(fc.ipV4(), { maxLength: 3 }),
  cgroupPath: fc.option(text, { nil: undefined }), uid: fc.option(text, { nil: undefined }),
  ready: fc.option(fc.boolean(), { nil: undefined }), terminating: fc.option(fc.boolean(), { nil: undefined }),
  containerPorts: fc.option(fc.dictionary(name, fc.integer({ min: 1, max: 65535 }), { minKeys: 1, maxKeys: 3 }), { nil: undefined }),
}, { requiredKeys: ['namespace', 'name', 'labels', 'annotations', 'nodeName', 'serviceAccount', 'ips'] })
  // Plain objects, as PodInfo is everywhere else (fast-check makes them without a prototype).
  .map((p) => JSON.parse(JSON.stringify(p)) as PodInfo);

/** A PodInfo as protobufjs's message object (the proto3 optional fields only when set). */
function podObject(p: PodInfo): Record<string, unknown> {
  const o: Record<string, unknown> = { namespace: p.namespace, name: p.name, labels: p.labels, annotations: p.annotations, nodeName: p.nodeName,
    serviceAccount: p.serviceAccount, ips: p.ips, containerPorts: p.containerPorts ?? {} };
  for (const k of ['cgroupPath', 'uid', 'ready', 'terminating'] as const) if (p[k] !== undefined) o[k] = p[k];
  return o;
}

const fullStateOf = (pods: PodInfo[], systemVersion: number) => ({ systemVersion, controlPlaneEpoch: 'epoch-1', fullState: true,
  resources: pods.map((p) => ({ kind: 'Pod', key: `${p.namespace}/${p.name}`, pod: podObject(p) })) });

test('discovery v2: what protobufjs encodes, the hand-written decoder reads the same; and the other way round', () => {
  fc.assert(fc.property(fc.uniqueArray(pod, { selector: (p) => `${p.namespace}/${p.name}`, maxLength: 5 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), (pods, version) => {
    // protobufjs → ours
    const theirs = Buffer.from(Response.encode(Response.fromObject(fullStateOf(pods, version))).finish());
    const decoded = decodeDeltaResponse(theirs);
    assert.ok(decoded.ok, decoded.ok ? '' : decoded.error);
    assert.equal(decoded.value.systemVersion, version);
    assert.deepEqual(decoded.value.resources.map((r) => r.value), pods);
    // ours → protobufjs
    const ours = encodeDeltaResponseFramed({ systemVersion: version, epoch: 'epoch-1', fullState: true, baseVersion: 0, removed: [] },
      pods.map((p) => frameResource(encodeResource({ kind: 'Pod', key: `${p.namespace}/${p.name}`, value: p }))));
    const read = Response.toObject(Response.decode(ours), TO_OBJECT);
    assert.deepEqual(read, Response.toObject(Response.fromObject(fullStateOf(pods, version)), TO_OBJECT));
  }), { numRuns: 200 });
});

test('discovery v2: a delta\'s header, removals and JSON bodies read the same either way', () => {
  const header = { systemVersion: 2 ** 40 + 7, epoch: 'é-1', fullState: false, baseVersion: 2 ** 40, removed: [{ kind: 'Pod' as const, key: 'shop/gone' }], more: true as const };
  const node = { name: 'node-a', internalIPs: ['192.168.0.1'] };
  const json = encodeResource({ kind: 'Node', key: 'node-a', value: node });
  assert.deepEqual(Resource.toObject(Resource.decode(json), { ...TO_OBJECT, bytes: String }), { kind: 'Node', key: 'node-a', json: Buffer.from(JSON.stringify(node)).toString('base64') });
  const ours = encodeDeltaResponseFramed(header, [frameResource(json)]);
  assert.deepEqual(Response.toObject(Response.decode(ours), { ...TO_OBJECT, bytes: String }), {
    systemVersion: header.systemVersion, controlPlaneEpoch: 'é-1', baseVersion: header.baseVersion, more: true,
    resources: [{ kind: 'Node', key: 'node-a', json: Buffer.from(JSON.stringify(node)).toString('base64') }], removedResources: [{ kind: 'Pod', key: 'shop/gone' }],
  });
  const theirs = Buffer.from(Response.encode(Response.fromObject({ systemVersion: header.systemVersion, controlPlaneEpoch: 'é-1', fullState: false, baseVersion: header.baseVersion,
    resources: [{ kind: 'Node', key: 'node-a', json: Buffer.from(JSON.stringify(node)) }], removedResources: [{ kind: 'Pod', key: 'shop/gone' }], more: true })).finish());
  const decoded = decodeDeltaResponse(theirs);
  assert.ok(decoded.ok, decoded.ok ? '' : decoded.error);
  assert.deepEqual(decoded.value, { systemVersion: header.systemVersion, epoch: 'é-1', fullState: false, baseVersion: header.baseVersion,
    resources: [{ kind: 'Node', key: 'node-a', value: node }], removed: [{ kind: 'Pod', key: 'shop/gone' }], more: true });
});

test('discovery v2: the Watch request, both ways; versions past 2^53 and malformed bytes are refused, never thrown', () => {
  for (const request of [{ node: 'node-a' }, { node: 'n', resume: { epoch: 'e', version: Number.MAX_SAFE_INTEGER } }]) {
    const read = WatchRequest.toObject(WatchRequest.decode(encodeWatchRequestV2(request)), TO_OBJECT);
    assert.deepEqual(read, request.resume ? { node: request.node, controlPlaneEpoch: request.resume.epoch, version: request.resume.version } : { node: request.node });
    const theirs = Buffer.from(WatchRequest.encode(WatchRequest.fromObject(read)).finish());
    assert.deepEqual(decodeWatchRequestV2(theirs), { ok: true, value: request });
  }
  const big = Buffer.from(WatchRequest.encode(WatchRequest.fromObject({ node: 'n', controlPlaneEpoch: 'e', version: '9007199254740993' })).finish());
  const refused = decodeWatchRequestV2(big);
  assert.ok(!refused.ok && /past 2\^53/.test(refused.error), JSON.stringify(refused));
  const bigVersion = Buffer.from(Response.encode(Response.fromObject({ systemVersion: '18446744073709551615', controlPlaneEpoch: 'e', fullState: true })).finish());
  const tooBig = decodeDeltaResponse(bigVersion);
  assert.ok(!tooBig.ok && /system_version is past 2\^53/.test(tooBig.error), JSON.stringify(tooBig));
  const good = encodeDeltaResponseFramed({ systemVersion: 5, epoch: 'e', fullState: true, baseVersion: 0, removed: [] },
    [frameResource(encodeResource({ kind: 'Pod', key: 'a/b', value: { namespace: 'a', name: 'b', labels: { x: 'y' }, annotations: {}, nodeName: 'n', serviceAccount: 's', ips: ['10.0.0.1'] } }))]);
  for (let cut = 1; cut < good.length; cut++) {
    const r = decodeDeltaResponse(good.subarray(0, cut));
    if (r.ok) continue; // a cut at a field boundary is a shorter, valid message
    assert.match(r.error, /not a weft\.discovery\.v2\.DeltaDiscoveryResponse|without|has no body|keyed/);
  }
  const badUtf8 = Buffer.concat([Buffer.from([0x12, 2]), Buffer.from([0xc3, 0x28])]);
  const r = decodeDeltaResponse(badUtf8);
  assert.ok(!r.ok && /not a weft\.discovery\.v2\.DeltaDiscoveryResponse/.test(r.error), JSON.stringify(r));
});

test('discovery v2: an encoding that throws half way leaves nothing behind for the next message', () => {
  const header = { systemVersion: 9, epoch: 'e', fullState: true, baseVersion: 0, removed: [] };
  const good = encodeDeltaResponseFramed(header, []);
  assert.throws(() => encodeDeltaResponseFramed({ ...header, systemVersion: 7, baseVersion: -1, fullState: false }, []), /not a uint64/);
  assert.deepEqual(encodeDeltaResponseFramed(header, []), good);
  const decoded = decodeDeltaResponse(good);
  assert.ok(decoded.ok && decoded.value.systemVersion === 9, JSON.stringify(decoded));
});
