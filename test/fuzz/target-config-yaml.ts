import * as fc from 'fast-check';
import { stringify } from 'yaml';
import { parseConfig } from '../../agent/config/parse';
import { PolicySet } from '../../agent/policy/policy-set';
import { RouteIndex } from '../../agent/route/route-index';
import { loadCorpus } from './corpus';
import { corpusObjects, editedObject } from './gen-objects';
import { check, mustNotThrow, type FuzzTarget } from './target';

const objects = corpusObjects(loadCorpus('config-yaml'));
const stream = fc.array(editedObject(objects), { minLength: 1, maxLength: 3 })
  .chain((docs) => fc.constantFrom(
    docs.map((d) => stringify(d)).join('---\n'),
    `apiVersion: v1\nkind: List\n${stringify({ items: docs })}`,
    docs.map((d) => JSON.stringify(d)).join('\n---\n'),
  ))
  .map((s) => Buffer.from(s, 'utf8'));

export const target: FuzzTarget = {
  name: 'config-yaml',
  what: 'agent/config/parse.ts parseConfig (weft local --config, the control plane\'s file source) with every kind of agent/config/kinds.ts: a Result, never a throw; every error names its object and carries a message; an accepted snapshot compiles (PolicySet, RouteIndex) without a throw',
  generators: [stream],
  maxBytes: 4096,
  run(input) {
    const result = mustNotThrow('parseConfig', () => parseConfig(input.toString('utf8'), 'fuzz.yaml'));
    if (!result.ok) {
      check(result.error.length > 0, 'a refused stream has errors');
      for (const e of result.error) check(typeof e.object === 'string' && e.object !== '' && typeof e.field === 'string' && typeof e.message === 'string' && e.message !== '', `error without object or message: ${JSON.stringify(e)}`);
      return;
    }
    const s = result.value;
    mustNotThrow('new PolicySet', () => new PolicySet(s.authorizationPolicies));
    mustNotThrow('new RouteIndex', () => new RouteIndex(s.httpRoutes ?? [], s.grpcRoutes ?? [], s.services));
  },
};
