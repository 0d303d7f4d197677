import * as fc from 'fast-check';
import {
  decodeCertificateRequest, decodeCertificateResponse, encodeCertificateRequest, encodeCertificateResponse, type StructValue,
} from '../../agent/controlplane/istio-ca-wire';
import { check, mustNotThrow, type FuzzTarget } from './target';

const { value: structValue } = fc.letrec<{ value: StructValue }>((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true },
    fc.constant(null), fc.boolean(), fc.double({ noNaN: true }), fc.string({ maxLength: 12 }),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.string({ maxLength: 8 }), tie('value'), { maxKeys: 4 })) as fc.Arbitrary<StructValue>,
}));
const request = fc.record({
  csr: fc.string({ maxLength: 200 }),
  validityDuration: fc.oneof(fc.constant(0), fc.integer({ min: -1_000_000, max: 1_000_000_000 })),
  metadata: fc.dictionary(fc.string({ maxLength: 12 }), structValue, { maxKeys: 4 }),
});
const response = fc.record({ certChain: fc.array(fc.string({ maxLength: 100 }), { maxLength: 4 }) });

/** Canonical text of a decoded value (object keys in order, -0 kept apart from 0). */
const canon = (v: unknown): string => JSON.stringify(v, (_, x: unknown) => (Object.is(x, -0) ? '-0' : x));

export const target: FuzzTarget = {
  name: 'istio-ca-wire',
  what: 'agent/controlplane/istio-ca-wire.ts protobuf decoders (IstioCertificateRequest from any gRPC client of 15012, IstioCertificateResponse): a Result, never a throw; what our encoder writes decodes back to the same value',
  generators: [request.map(encodeCertificateRequest), response.map(encodeCertificateResponse)],
  maxBytes: 1024,
  run(input) {
    const req = mustNotThrow('decodeCertificateRequest', () => decodeCertificateRequest(input));
    if (req.ok) {
      check(typeof req.value.csr === 'string' && Number.isSafeInteger(req.value.validityDuration), 'decoded request fields have their types');
      const again = decodeCertificateRequest(encodeCertificateRequest(req.value));
      check(again.ok && canon(again.value) === canon(req.value), 'a decoded request re-encodes and decodes to something else');
    } else {
      check(req.error.startsWith('malformed IstioCertificateRequest: '), `request refusal "${req.error}"`);
    }
    const res = mustNotThrow('decodeCertificateResponse', () => decodeCertificateResponse(input));
    if (res.ok) {
      const again = decodeCertificateResponse(encodeCertificateResponse(res.value));
      check(again.ok && canon(again.value) === canon(res.value), 'a decoded response re-encodes and decodes to something else');
    }
  },
};
