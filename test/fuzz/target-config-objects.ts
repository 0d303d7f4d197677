import { kindFragment } from '../../agent/controlplane/discovery-kube-convert';
import { loadCorpus } from './corpus';
import { corpusObjects, editedObject } from './gen-objects';
import { check, mustNotThrow, type FuzzTarget } from './target';

// The corpus is shared with config-yaml: the same objects, handed over as the API server would.
const objects = corpusObjects(loadCorpus('config-yaml'));
const outsideMetadata = (path: Array<string | number>): boolean => path[0] === 'metadata' || path[0] === 'kind';
const json = editedObject(objects, outsideMetadata).map((o) => Buffer.from(JSON.stringify(o), 'utf8'));

export const target: FuzzTarget = {
  name: 'config-objects',
  what: 'agent/controlplane/discovery-kube-convert.ts kindFragment: the Kubernetes source\'s path for every kind (custom resources reach it with whatever spec a user applied; metadata as the API server guarantees it): a Result naming the bad fields, never a throw',
  generators: [json],
  maxBytes: 2048,
  run(input) {
    let obj: unknown;
    try { obj = JSON.parse(input.toString('utf8')); } catch { return; }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return;
    const o = obj as { kind?: unknown; metadata?: unknown };
    if (typeof o.kind !== 'string') return;
    const m = o.metadata;
    // The API server's guarantee: metadata is an object with string name/namespace and string maps.
    if (m !== undefined && (typeof m !== 'object' || m === null || Array.isArray(m))) return;
    const r = mustNotThrow('kindFragment', () => kindFragment(o.kind as string, obj as Parameters<typeof kindFragment>[1]));
    if (!r.ok) check(r.error.length > 0, 'a refusal says why');
  },
};
