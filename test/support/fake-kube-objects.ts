/**
 * A stand-in for the Kubernetes API server, for tests where it is a dependency and not the thing
 * under test: a loopback HTTP server answering GET, POST and PUT of
 * /api/v1/namespaces/<ns>/<plural>[/<name>] for one kind of core/v1 object, as the real one does:
 * resourceVersion bumped on every write, a PUT carrying an old resourceVersion refused, and Status
 * bodies with NotFound, AlreadyExists, Conflict and Forbidden.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';

export interface ObjectRef { namespace: string; name: string }

export interface ObjectMeta {
  name: string;
  namespace: string;
  resourceVersion: string;
  uid: string;
  creationTimestamp: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface Secret {
  apiVersion: 'v1';
  kind: 'Secret';
  metadata: ObjectMeta;
  type: string;
  data?: Record<string, string>;
}

export interface ConfigMap {
  apiVersion: 'v1';
  kind: 'ConfigMap';
  metadata: ObjectMeta;
  data?: Record<string, string>;
}

export type KubeObject = Secret | ConfigMap;

export type Verb = 'get' | 'create' | 'update';

/** What differs between the kinds served: the URL plural, and per-kind checks and defaults. */
export interface ObjectKind<T extends KubeObject> {
  plural: 'secrets' | 'configmaps';
  kind: T['kind'];
  /** A write's body refused with 400 BadRequest: the message, or undefined when it is valid. */
  validate?(sent: T): string | undefined;
  /** Fields the API server fills in on a create (and `put`) when the client left them out. */
  withDefaults?(object: T): T;
}

export const SECRETS: ObjectKind<Secret> = {
  plural: 'secrets',
  kind: 'Secret',
  validate: (sent) => Object.values(sent.data ?? {}).some((value) => Buffer.from(value, 'base64').toString('base64') !== value)
    ? 'illegal base64 data in Secret.data'
    : undefined,
  withDefaults: (secret) => ({ ...secret, type: secret.type || 'Opaque' }),
};

export const CONFIGMAPS: ObjectKind<ConfigMap> = {
  plural: 'configmaps',
  kind: 'ConfigMap',
};

const CREATED_AT = '2030-01-01T00:00:00Z';

export class FakeKubeObjects<T extends KubeObject> {
  readonly objects = new Map<string, T>();
  readonly namespaces = new Set(['weft-system']);
  /** "GET /api/v1/..." and, for a PUT, the resourceVersion it carried: "PUT /api/v1/... @105". */
  readonly requests: string[] = [];
  /** Verbs answered 403, as without the RBAC. */
  readonly forbidden = new Set<Verb>();
  /** Runs when a write arrives, before it is applied: another writer can get there first. */
  beforeWrite: ((verb: 'create' | 'update') => void) | undefined;
  private version = 100;
  private readonly server: Server = createServer((req, res) => this.handle(req, res));

  constructor(private readonly kind: ObjectKind<T>, private readonly defaultRef?: ObjectRef) {}

  async start(t: TestContext): Promise<KubeConfig> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => { this.server.closeAllConnections(); this.server.close(() => resolve()); }));
    return kubeConfig(`http://127.0.0.1:${(this.server.address() as AddressInfo).port}`);
  }

  /** What a person or another tool puts there (kubectl apply), resourceVersion bumped. */
  put(ref: ObjectRef, data: Record<string, string>, extra: Partial<ObjectMeta> = {}): T {
    const previous = this.objects.get(`${ref.namespace}/${ref.name}`);
    const object = this.withDefaults({
      apiVersion: 'v1', kind: this.kind.kind, data,
      metadata: { name: ref.name, namespace: ref.namespace, uid: previous?.metadata.uid ?? `uid-${ref.name}`, creationTimestamp: CREATED_AT, ...extra, resourceVersion: this.nextVersion() },
    } as T);
    this.objects.set(`${ref.namespace}/${ref.name}`, object);
    return object;
  }

  get(ref: ObjectRef | undefined = this.defaultRef): T | undefined {
    if (!ref) throw new Error('get: no ref given and no default ref');
    return this.objects.get(`${ref.namespace}/${ref.name}`);
  }

  private nextVersion(): string {
    return String(++this.version);
  }

  private withDefaults(object: T): T {
    return this.kind.withDefaults ? this.kind.withDefaults(object) : object;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const { plural } = this.kind;
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => { body += chunk; });
    req.on('end', () => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      const match = new RegExp(`^/api/v1/namespaces/([^/]+)/${plural}(?:/([^/]+))?$`).exec(path);
      if (!match) {
        this.requests.push(`${req.method} ${path}`);
        return status(res, 404, 'NotFound', 'the server could not find the requested resource');
      }
      const [, namespace, name] = match as unknown as [string, string, string | undefined];
      const verb: Verb | undefined = req.method === 'GET' && name ? 'get' : req.method === 'POST' && !name ? 'create' : req.method === 'PUT' && name ? 'update' : undefined;
      const sent = verb === 'create' || verb === 'update' ? JSON.parse(body) as T : undefined;
      this.requests.push(`${req.method} ${path}${verb === 'update' ? ` @${sent?.metadata.resourceVersion ?? '-'}` : ''}`);
      if (verb === undefined) return status(res, 405, 'MethodNotAllowed', `${req.method} is not supported here`);
      if (this.forbidden.has(verb)) {
        return status(res, 403, 'Forbidden', `${plural}${name ? ` "${name}"` : ''} is forbidden: User "system:serviceaccount:weft-system:weft-controlplane" cannot ${verb} resource "${plural}" in API group "" in the namespace "${namespace}"`);
      }
      const key = `${namespace}/${name}`;
      if (verb === 'get') {
        const found = this.objects.get(key);
        return found ? json(res, 200, found) : status(res, 404, 'NotFound', `${plural} "${name}" not found`);
      }
      for (const value of Object.values(sent!.data ?? {})) {
        if (typeof value !== 'string') return status(res, 400, 'BadRequest', `${this.kind.kind}.data values must be strings`);
      }
      const invalid = this.kind.validate?.(sent!);
      if (invalid !== undefined) return status(res, 400, 'BadRequest', invalid);
      this.beforeWrite?.(verb);
      if (verb === 'create') {
        if (!this.namespaces.has(namespace)) return status(res, 404, 'NotFound', `namespaces "${namespace}" not found`);
        const target = `${namespace}/${sent!.metadata.name}`;
        if (this.objects.has(target)) return status(res, 409, 'AlreadyExists', `${plural} "${sent!.metadata.name}" already exists`);
        if (sent!.metadata.resourceVersion) return status(res, 500, 'InternalError', 'resourceVersion should not be set on objects to be created');
        const created = this.withDefaults({ ...sent!, metadata: { ...sent!.metadata, namespace, uid: `uid-${sent!.metadata.name}`, creationTimestamp: CREATED_AT, resourceVersion: this.nextVersion() } });
        this.objects.set(target, created);
        return json(res, 201, created);
      }
      const current = this.objects.get(key);
      if (sent!.metadata.name !== name) return status(res, 400, 'BadRequest', 'the name of the object does not match the name on the URL');
      if (!current) return status(res, 404, 'NotFound', `${plural} "${name}" not found`);
      if (sent!.metadata.resourceVersion && sent!.metadata.resourceVersion !== current.metadata.resourceVersion) {
        return status(res, 409, 'Conflict', `Operation cannot be fulfilled on ${plural} "${name}": the object has been modified; please apply your changes to the latest version and try again`);
      }
      const replaced: T = { ...sent!, metadata: { ...sent!.metadata, uid: current.metadata.uid, creationTimestamp: current.metadata.creationTimestamp, resourceVersion: this.nextVersion() } };
      this.objects.set(key, replaced);
      return json(res, 200, replaced);
    });
  }
}

function json(res: ServerResponse, code: number, body: object): void {
  res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

function status(res: ServerResponse, code: number, reason: string, message: string): void {
  json(res, code, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code });
}

/** A kubeconfig pointing at `server`, without credentials. */
export function kubeConfig(server: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'fake', server, skipTLSVerify: true }],
    users: [{ name: 'test' }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'test' }],
    currentContext: 'fake',
  });
  return kc;
}
