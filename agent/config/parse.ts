import type * as Yaml from 'yaml';
import { err, ok, type Result } from '../core/result';
import { Checker, isMapping, join, type Fields } from './checker';
import type { ConfigError } from './config-error';
import { KINDS, type Draft } from './kinds';
import { DEFAULT_NAMESPACE, readMetadata } from './metadata';
import { emptySnapshot, objectKey, type Snapshot } from './objects';

/** yaml (72 files; 8 MiB of resident memory loaded alone) loads with the first stream read, not with every process that could read one (docs/memory.md). */
const yaml = (): typeof Yaml => require('yaml') as typeof Yaml;

const ENVELOPE = new Set(['apiVersion', 'kind', 'metadata', 'spec', 'status']);
const LIST_ENVELOPE = new Set(['apiVersion', 'kind', 'metadata', 'items']);
const KIND_NAMES = [...Object.keys(KINDS), 'List'].join(', ');

/**
 * Reads a multi-document YAML stream of Kubernetes-shaped objects (or `kind: List`s of them) into
 * a Snapshot. Strict: every problem in the stream is collected and none of it applies if any is found.
 * `source` names the stream (a file path) in syntax errors.
 */
export function parseConfig(text: string, source: string): Result<Snapshot, ConfigError[]> {
  const errors: ConfigError[] = [];
  const draft: Draft = { snapshot: emptySnapshot(), hostNetworkPods: new Set() };
  const firstSeen = new Map<string, string>();

  const readObject = (value: unknown, where: string): void => {
    if (!isMapping(value)) {
      errors.push({ object: where, field: '', message: 'must be a mapping with apiVersion, kind and metadata' });
      return;
    }
    if (typeof value.kind !== 'string' || value.kind === '') {
      errors.push({ object: where, field: 'kind', message: 'must be a non-empty string' });
      return;
    }
    const kind = KINDS[value.kind];
    if (kind === undefined) {
      const message = value.kind === 'List' ? 'a List cannot contain a List' : `unknown kind "${value.kind}"; Weft reads ${KIND_NAMES}`;
      errors.push({ object: where, field: 'kind', message });
      return;
    }
    const label = labelOf(value.kind, value.metadata, kind.namespaced, where);
    const c = new Checker(label, errors);
    if (value.apiVersion !== kind.apiVersion) c.fail('apiVersion', `must be "${kind.apiVersion}" for ${value.kind} (got ${JSON.stringify(value.apiVersion)})`);
    c.allowOnly(value, '', kind.fields ?? ENVELOPE);
    const meta = readMetadata(c, value.metadata, kind.namespaced);
    const add = kind.read(c, value, meta);
    if (meta.name !== '') {
      const first = firstSeen.get(label);
      if (first !== undefined) c.fail('metadata.name', `duplicate: ${label} is already defined in ${first}`);
      else firstSeen.set(label, where);
    }
    if (!c.failed) add(draft);
  };

  yaml().parseAllDocuments(text).forEach((doc, i) => {
    const where = `document ${i + 1}`;
    if (doc.errors.length > 0) {
      for (const e of doc.errors) errors.push({ object: where, field: '', message: syntaxMessage(e, source) });
      return;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (e) {
      errors.push({ object: where, field: '', message: `cannot read YAML: ${(e as Error).message}` });
      return;
    }
    if (value === null || value === undefined) return;
    if (isMapping(value) && value.kind === 'List') readList(value, where, errors).forEach((item, j) => readObject(item, `${where} ${join('items', j)}`));
    else readObject(value, where);
  });

  checkAddressesUnique(draft, errors);
  return errors.length > 0 ? err(errors) : ok(draft.snapshot);
}

/** `Pod default/web`, `Node n1`; an object without a usable name is named by its place. */
function labelOf(kind: string, metadata: unknown, namespaced: boolean, where: string): string {
  const meta = isMapping(metadata) ? metadata : {};
  if (typeof meta.name !== 'string' || meta.name === '') return `${kind} in ${where}`;
  if (!namespaced) return `${kind} ${meta.name}`;
  if (meta.namespace === undefined) return `${kind} ${DEFAULT_NAMESPACE}/${meta.name}`;
  if (typeof meta.namespace === 'string' && meta.namespace !== '') return `${kind} ${meta.namespace}/${meta.name}`;
  return `${kind} ${meta.name} in ${where}`;
}

function readList(value: Fields, where: string, errors: ConfigError[]): unknown[] {
  const c = new Checker(`List in ${where}`, errors);
  if (value.apiVersion !== 'v1') c.fail('apiVersion', `must be "v1" for List (got ${JSON.stringify(value.apiVersion)})`);
  c.allowOnly(value, '', LIST_ENVELOPE);
  return c.list(value.items, 'items') ?? [];
}

/** `YAML syntax error at cfg.yaml:4:1: Map keys must be unique` */
function syntaxMessage(e: Yaml.YAMLError, source: string): string {
  const summary = e.message.split('\n')[0].replace(/ at line \d+, column \d+:$/, '');
  const pos = e.linePos?.[0];
  return pos ? `YAML syntax error at ${source}:${pos.line}:${pos.col}: ${summary}` : `YAML syntax error in ${source}: ${summary}`;
}

/** Traffic is attributed by address, so two pods (or two Services) must not claim the same one. */
function checkAddressesUnique(draft: Draft, errors: ConfigError[]): void {
  const podOwner = new Map<string, string>();
  for (const pod of draft.snapshot.pods) {
    const key = objectKey(pod);
    if (draft.hostNetworkPods.has(key)) continue;
    pod.ips.forEach((ip, i) => {
      const owner = podOwner.get(ip);
      if (owner === undefined) podOwner.set(ip, key);
      else errors.push({ object: `Pod ${key}`, field: i === 0 ? 'status.podIP' : 'status.podIPs', message: `${ip} is already the address of Pod ${owner}` });
    });
  }
  const serviceOwner = new Map<string, string>();
  for (const svc of draft.snapshot.services) {
    const key = objectKey(svc);
    for (const ip of svc.clusterIPs) {
      const owner = serviceOwner.get(ip);
      if (owner === undefined) serviceOwner.set(ip, key);
      else errors.push({ object: `Service ${key}`, field: 'spec.clusterIP', message: `${ip} is already the address of Service ${owner}` });
    }
  }
}
