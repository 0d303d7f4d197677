import * as fc from 'fast-check';
import { decodeDeltaResponse, decodeWatchRequestV2, encodeDeltaResponse, encodeResource, encodeWatchRequestV2 } from '../../agent/controlplane/discovery-proto';
import { keyOf, resourceId, type Resource, type ResourceKind } from '../../agent/controlplane/discovery-resources';
import { ChunkAssembler } from '../../agent/controlplane/discovery-chunks';
import { DiscoveryState } from '../../agent/controlplane/discovery-state';
import { check, mustNotThrow, type FuzzTarget } from './target';

const name = fc.constantFrom('a', 'web-1', '', 'x/y', 'ü', 'a'.repeat(70));
const kind = fc.constantFrom<string>('Pod', 'Namespace', 'Node', 'Service', 'AuthorizationPolicy', 'ProxyConfig', 'HTTPRoute', 'Bogus', '');
const version = fc.oneof(fc.constantFrom(0, 1, 7, 2 ** 53 - 1, 2 ** 60), fc.nat());

const pod = fc.record({
  namespace: name, name, labels: fc.dictionary(name, name, { maxKeys: 2 }), annotations: fc.constant({}),
  nodeName: name, serviceAccount: name, ips: fc.array(fc.constantFrom('10.0.0.1', 'fd00::1', 'nope'), { maxLength: 2 }),
  ready: fc.option(fc.boolean(), { nil: undefined }), containerPorts: fc.option(fc.dictionary(name, fc.integer({ min: 0, max: 70000 }), { maxKeys: 2 }), { nil: undefined }),
}, { requiredKeys: ['namespace', 'name', 'labels', 'annotations', 'nodeName', 'serviceAccount', 'ips'] });

/** Resources, mostly well keyed, some keyed wrong, some with bodies of another shape. */
const resource = fc.oneof(
  pod.map((p) => ({ kind: 'Pod', key: `${p.namespace}/${p.name}`, value: p })),
  fc.record({ kind, key: name, value: fc.oneof(pod, fc.record({ name, namespace: name }), fc.object({ maxDepth: 1 })) }),
);

const response = fc.record({
  systemVersion: version, epoch: fc.constantFrom('', 'e1', 'e2'), fullState: fc.boolean(), baseVersion: version,
  resources: fc.array(resource, { maxLength: 4 }),
  removed: fc.array(fc.record({ kind, key: name }), { maxLength: 3 }),
  more: fc.boolean(),
}).map((m) => mustNotThrow('encodeDeltaResponse', () => encodeDeltaResponse(
  {
    systemVersion: m.systemVersion, epoch: m.epoch, fullState: m.fullState, baseVersion: m.baseVersion, removed: m.removed as Array<{ kind: ResourceKind; key: string }>,
    ...(m.more ? { more: true as const } : {}),
  },
  m.resources.map((r) => encodeResource(r as Resource)),
)));

const request = fc.record({ node: name, epoch: fc.constantFrom('', 'e1'), version })
  .map((r) => encodeWatchRequestV2({ node: r.node, ...(r.epoch === '' && r.version === 0 ? {} : { resume: { epoch: r.epoch, version: r.version } }) }));

export const target: FuzzTarget = {
  name: 'discovery-v2',
  what: 'agent/controlplane/discovery-proto.ts decodeWatchRequestV2 (any client of 15012) and decodeDeltaResponse (the agent\'s edge), then ChunkAssembler.add (a chunk with more held until its sequence ends) and DiscoveryState.apply: a Result, never a throw; an accepted response is consistent (versions, keys that match their bodies, no id twice, a full state removes nothing)',
  generators: [response, request],
  maxBytes: 1024,
  run(input) {
    const req = mustNotThrow('decodeWatchRequestV2', () => decodeWatchRequestV2(input));
    if (req.ok) {
      check(typeof req.value.node === 'string' && req.value.node !== '', 'an accepted Watch request names a node');
      if (req.value.resume) check(req.value.resume.epoch !== '' && Number.isSafeInteger(req.value.resume.version) && req.value.resume.version > 0, 'a resume has an epoch and a positive version');
    }
    const res = mustNotThrow('decodeDeltaResponse', () => decodeDeltaResponse(input));
    if (!res.ok) return;
    const m = res.value;
    check(Number.isSafeInteger(m.systemVersion) && m.systemVersion > 0 && m.epoch !== '', 'an accepted response has a positive version and an epoch');
    check(m.fullState ? m.baseVersion === 0 && m.removed.length === 0 : m.baseVersion > 0, 'full state: no base, nothing removed; delta: a base');
    const ids = [...m.resources.map((r) => resourceId(r.kind, r.key)), ...m.removed.map((r) => resourceId(r.kind, r.key))];
    check(new Set(ids).size === ids.length, 'no resource twice in one response');
    for (const r of m.resources) check(keyOf(r.kind, r.value) === r.key, `${r.kind} ${r.key}: the key is the body's own`);
    // Through the agent's chunk assembler, as the client applies it: a chunk with more waits for
    // the rest (here: an empty last chunk of the same sequence), and a chunk repeating its resources is refused.
    const assembler = new ChunkAssembler();
    const first = mustNotThrow('ChunkAssembler.add', () => assembler.add(m));
    check(first.ok, 'the first chunk of a sequence is accepted');
    let whole = first.value;
    if (m.more === true) {
      check(whole === undefined && assembler.inProgress(), 'a chunk with more is held, not applied');
      if (m.resources.length > 0) {
        const again = mustNotThrow('ChunkAssembler.add', () => new ChunkAssembler().add(m));
        check(again.ok, 'the first chunk again, on a new stream');
        const repeat = mustNotThrow('ChunkAssembler.add', () => { const a = new ChunkAssembler(); a.add(m); return a.add(m); });
        check(!repeat.ok, 'a chunk listing the resources of an earlier chunk is refused');
      }
      const last = mustNotThrow('ChunkAssembler.add', () => assembler.add({ ...m, resources: [], removed: [], more: undefined }));
      check(last.ok && last.value !== undefined && last.value.resources.length === m.resources.length && last.value.more === undefined, 'the last chunk completes the sequence with every resource of its chunks');
      whole = last.value;
    }
    check(whole !== undefined, 'a complete sequence');
    const state = new DiscoveryState();
    const applied = mustNotThrow('DiscoveryState.apply', () => state.apply(whole));
    check(applied.ok === m.fullState, 'a first message applies exactly when it is a full state');
    if (applied.ok) check(Array.isArray(applied.value.pods) && applied.value.pods.length === m.resources.filter((r) => r.kind === 'Pod').length, 'the rebuilt snapshot holds every pod sent');
  },
};
