import * as fc from 'fast-check';
import { decodeVersionedSnapshot, decodeWatchRequest } from '../../agent/controlplane/discovery-wire';
import { check, mustNotThrow, type FuzzTarget } from './target';

const json = fc.oneof(
  fc.record({ node: fc.oneof(fc.string(), fc.integer(), fc.constant(null)) }, { requiredKeys: [] }),
  fc.record({ version: fc.oneof(fc.integer(), fc.double(), fc.string(), fc.constant(2 ** 60)), snapshot: fc.oneof(fc.object(), fc.constant(null), fc.array(fc.nat())) }, { requiredKeys: [] }),
  fc.jsonValue(),
).map((v) => Buffer.from(JSON.stringify(v) ?? 'null', 'utf8'));

export const target: FuzzTarget = {
  name: 'discovery-wire',
  what: 'agent/controlplane/discovery-wire.ts decodeWatchRequest (any client of 15012) and decodeVersionedSnapshot (the agent\'s view of the control plane): a Result, never a throw; accepted values have the promised shape',
  generators: [json],
  maxBytes: 512,
  run(input) {
    const req = mustNotThrow('decodeWatchRequest', () => decodeWatchRequest(input));
    if (req.ok) check(typeof req.value.node === 'string' && req.value.node !== '', 'an accepted Watch request names a node');
    const snap = mustNotThrow('decodeVersionedSnapshot', () => decodeVersionedSnapshot(input));
    if (snap.ok) check(Number.isSafeInteger(snap.value.version) && snap.value.version > 0 && typeof snap.value.snapshot === 'object' && snap.value.snapshot !== null, 'an accepted snapshot has a positive version and an object');
  },
};
