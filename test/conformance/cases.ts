/**
 * The Gateway API mesh (GAMMA) conformance cases as data: gamma-cases.json (copied unchanged from
 * the upstream suite's Go and YAML; gamma-cases.md beside it says how upstream judges them). This
 * module only types and loads the file; nothing here decides anything.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export type Level = 'core' | 'extended';
export type Profile = 'MESH-HTTP' | 'MESH-GRPC';

export interface Feature {
  name: string;
  level: Level;
}

export interface CaseClient {
  /** e.g. `app=echo,version=v1` */
  pod_selector: string;
  namespace: string;
  deployment: string;
}

export interface CaseRequest {
  protocol: 'http' | 'grpc';
  /** `echo`, `echo-v1:8080`, `echo-v1.gateway-conformance-mesh`, `${ECHO_V2_POD_IP}:8080`, ... */
  host: string;
  path: string;
  method: string | null;
  headers: Record<string, string>;
  url: string;
  unfollow_redirect?: boolean;
}

export interface RedirectExpect {
  scheme?: string;
  host?: string;
  port?: string;
  path?: string;
}

export interface RequestExpect {
  status: number;
  /** name prefix of the answering pod; null = not checked */
  backend: string | null;
  backend_namespace?: string;
  request_headers_seen_by_backend?: Record<string, string>;
  absent_request_headers_seen_by_backend?: string[];
  response_headers?: Record<string, string>;
  absent_response_headers?: string[];
  path_seen_by_backend?: string;
  redirect?: RedirectExpect;
}

export interface WeightedExpect {
  fractions: Record<string, number>;
  tolerance: number;
  requests_per_attempt: number;
  max_attempts: number;
  active_backends: number;
  route_weights: Record<string, number>;
}

interface CaseCommon {
  /** `<ShortName>/<index>` */
  id: string;
  upstream_subtest: string;
  client: CaseClient;
  request: CaseRequest;
}

export interface RequestCase extends CaseCommon {
  kind: 'request';
  expect: RequestExpect;
  checked_upstream: string[];
  declared_not_checked_upstream: string[];
}

export interface WeightedCase extends CaseCommon {
  kind: 'weighted_distribution';
  expect: WeightedExpect;
}

export type GammaCase = RequestCase | WeightedCase;

export interface GammaTest {
  /** the upstream ShortName */
  name: string;
  description: string;
  provisional: boolean;
  features: Feature[];
  level: Level;
  counted_in_profiles: Partial<Record<Profile, Level>>;
  needs?: 'grpc';
  /** HTTPRoute / GRPCRoute objects, unchanged */
  routes: object[];
  extra_objects: object[];
  cases: GammaCase[];
}

export interface ServicePortSpec {
  name: string;
  port: number;
  targetPort: number | null;
  appProtocol: string | null;
}

export interface BaseService {
  name: string;
  namespace: string;
  selector: Record<string, string>;
  ports: ServicePortSpec[];
}

export interface BaseDeployment {
  name: string;
  namespace: string;
  pod_labels: Record<string, string>;
}

export interface GammaData {
  source_commit: string;
  base: {
    namespace: string;
    consumer_namespace: string;
    namespaces: Array<{ name: string; labels: Record<string, string> }>;
    services: BaseService[];
    deployments: BaseDeployment[];
  };
  tests: GammaTest[];
  counts: { tests: number; cases: number };
}

/** Where the runner reads the cases: `WEFT_GAMMA_CASES`, else the copy kept in test/conformance. */
export function casesPath(): string {
  return process.env.WEFT_GAMMA_CASES ?? join(__dirname, '..', '..', '..', 'test', 'conformance', 'gamma-cases.json');
}

/** Loads and sanity-checks the case file; a malformed file is named with what is wrong. */
export function loadCases(path = casesPath()): GammaData {
  let data: GammaData;
  try {
    data = JSON.parse(readFileSync(path, 'utf8')) as GammaData;
  } catch (e) {
    throw new Error(`conformance cases ${path}: ${(e as Error).message}`);
  }
  if (!Array.isArray(data.tests) || !data.base?.services) throw new Error(`conformance cases ${path}: no 'tests' list or 'base.services'`);
  const cases = data.tests.reduce((n, t) => n + t.cases.length, 0);
  if (data.counts && (data.counts.tests !== data.tests.length || data.counts.cases !== cases)) {
    throw new Error(`conformance cases ${path}: counts say ${data.counts.tests} tests/${data.counts.cases} cases, file has ${data.tests.length}/${cases}`);
  }
  return data;
}
