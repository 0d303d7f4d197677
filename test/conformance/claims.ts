/**
 * What Weft claims, in one place: the Gateway API features it declares (a test runs only when all
 * its features are claimed), the known exceptions (a claimed test allowed to fail, each with its
 * reason; none), and corrections of upstream expectations the stricter checks would otherwise
 * enforce although they are wrong as written.
 */

/** Gateway API feature names, as upstream's pkg/features spells them. */
export const CLAIMED_FEATURES: ReadonlySet<string> = new Set([
  // core
  'Mesh',
  'HTTPRoute',
  'GRPCRoute',
  // MESH-HTTP / MESH-GRPC extended (MeshExtendedFeatures): all of them
  'MeshClusterIPMatching',
  'MeshConsumerRoute',
  'MeshHTTPRouteBackendRequestHeaderModification',
  'MeshHTTPRouteNamedRouteRule',
  'MeshHTTPRouteQueryParamMatching',
  'MeshHTTPRouteRedirectPath',
  'MeshHTTPRouteRedirectPort',
  'MeshHTTPRouteRewritePath',
  'MeshHTTPRouteSchemeRedirect',
  // HTTPRoute extended features the mesh tests use (Weft builds them; counted in no mesh profile)
  'HTTPRoute303RedirectStatusCode',
  'HTTPRoute307RedirectStatusCode',
  'HTTPRoute308RedirectStatusCode',
  'HTTPRouteParentRefPort',
  'HTTPRouteResponseHeaderModification',
]);

/** A claimed test that is allowed to fail, and why. The integration test accepts only these. */
export interface KnownException {
  test: string;
  reason: string;
}

export const KNOWN_EXCEPTIONS: readonly KnownException[] = [];

/**
 * An expectation the stricter checks replace: upstream declares it but never asserts it, and as
 * written it contradicts its own route. The upstream checks are not affected.
 */
export interface Correction {
  case: string;
  field: 'path_seen_by_backend';
  upstream: string;
  corrected: string;
  reason: string;
}

export const CORRECTIONS: readonly Correction[] = [
  {
    case: 'MeshHTTPRouteNamedRule/1',
    field: 'path_seen_by_backend',
    upstream: '/named',
    corrected: '/unnamed',
    reason: 'the request goes to /unnamed and the route has no URLRewrite, so the backend sees /unnamed (upstream copied /named from case 0; it never asserts the path)',
  },
];

export function correctionFor(caseId: string, field: Correction['field']): Correction | undefined {
  return CORRECTIONS.find((c) => c.case === caseId && c.field === field);
}
