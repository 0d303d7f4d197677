import type { Checker, Fields } from './checker';
import type { Metadata } from './metadata';
import type { MtlsMode, PeerAuthenticationInfo } from './objects';

/** Istio's `security.istio.io/v1` PeerAuthentication spec. */
const SPEC = new Set(['selector', 'mtls', 'portLevelMtls']);
const SELECTOR = new Set(['matchLabels']);
const MTLS = new Set(['mode']);
const MODES = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'] as const;

export function convertPeerAuthentication(c: Checker, obj: Fields, meta: Metadata): PeerAuthenticationInfo {
  const spec = c.optionalMapping(obj.spec, 'spec');
  c.allowOnly(spec, 'spec', SPEC);
  const info: PeerAuthenticationInfo = {
    namespace: meta.namespace,
    name: meta.name,
    mode: mode(c, spec.mtls, 'spec.mtls'),
    portLevel: {},
  };
  if (spec.selector !== undefined) {
    const selector = c.mapping(spec.selector, 'spec.selector') ?? {};
    c.allowOnly(selector, 'spec.selector', SELECTOR);
    const matchLabels = c.stringMap(selector.matchLabels, 'spec.selector.matchLabels');
    // As in Istio, an empty selector is no selector: the policy is namespace-wide.
    if (Object.keys(matchLabels).length > 0) info.matchLabels = matchLabels;
  }
  if (spec.portLevelMtls !== undefined) {
    const ports = c.mapping(spec.portLevelMtls, 'spec.portLevelMtls') ?? {};
    if (info.matchLabels === undefined && Object.keys(ports).length > 0) {
      c.fail('spec.portLevelMtls', 'needs spec.selector.matchLabels: port-level modes apply to selected workloads only (as in Istio)');
    }
    for (const [key, value] of Object.entries(ports)) {
      const field = `spec.portLevelMtls[${key}]`;
      const port = c.port(/^\d+$/.test(key) ? Number(key) : key, field);
      if (port === undefined) continue;
      const m = mode(c, value, field);
      // STRICT is enforced per pod, at its host-side interface (bpf/weft_tc.c judges the sender,
      // not the port), so a per-port mode would be shown by `weft explain` but not carried out.
      if (m !== 'UNSET') {
        c.fail(`${field}.mode`, `${m} for port ${port} is not enforced by Weft: the mode applies to the whole pod ` +
          '(STRICT is enforced at the pod\'s interface, for every port). Set spec.mtls.mode for the workload, or move the port to a workload of its own');
      }
      info.portLevel[port] = m;
    }
  }
  return info;
}

/** `{ mode: STRICT }`; an absent block or mode is UNSET (inherit). */
function mode(c: Checker, value: unknown, field: string): MtlsMode {
  if (value === undefined) return 'UNSET';
  const block = c.mapping(value, field);
  if (!block) return 'UNSET';
  c.allowOnly(block, field, MTLS);
  if (block.mode === undefined) return 'UNSET';
  return c.oneOf(block.mode, `${field}.mode`, MODES) ?? 'UNSET';
}
