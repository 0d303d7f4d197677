import * as fc from 'fast-check';
import { parseSpiffeId, spiffeId } from '../../agent/identity/spiffe';
import { stringOf, text } from './gen';
import { check, mustNotThrow, type FuzzTarget } from './target';

const segment = fc.oneof(stringOf('abcXYZ019._-', 12), fc.constantFrom('', '.', '..', '%2e', 'a b', 'ns', 'sa', 'a/b', 'ä'));
const id = fc.tuple(fc.constantFrom('spiffe://', 'SPIFFE://', 'spiffe:/', 'spiffe:///', ''), stringOf('abc.-_:@0A', 20), fc.constantFrom('/ns/', '/NS/', '/ns//', '/'), segment, fc.constantFrom('/sa/', '/sa//', '/SA/'), segment, fc.constantFrom('', '/', '?q', '#f', '/extra'))
  .map((parts) => parts.join(''));

export const target: FuzzTarget = {
  name: 'spiffe-id',
  what: 'agent/identity/spiffe.ts parseSpiffeId (peer certificates\' URI SANs, CSR SANs): an accepted ID rebuilds to the very same string with spiffeId()',
  generators: [id.map(text)],
  maxBytes: 300,
  run(input) {
    const uri = input.toString('utf8');
    const parsed = mustNotThrow('parseSpiffeId', () => parseSpiffeId(uri));
    if (!parsed.ok) return check(parsed.error.length > 0, 'a refusal says why');
    const { trustDomain, namespace, serviceAccount } = parsed.value;
    check(spiffeId(trustDomain, namespace, serviceAccount) === uri, `parseSpiffeId accepted "${uri}", which does not rebuild to itself`);
  },
};
