import * as fc from 'fast-check';
import { readCsr } from '../../agent/controlplane/csr';
import { pem } from '../../agent/identity/csr-der';
import { loadCorpus } from './corpus';
import { check, settlesWithin, type FuzzTarget } from './target';

/** The TLV headers of a DER value: where each tag and length sits, nested values included. */
function tlvs(der: Buffer, from = 0, to = der.length, out: Array<{ at: number; lengthBytes: number; constructed: boolean }> = []): typeof out {
  let i = from;
  while (i + 2 <= to) {
    const tag = der[i]!;
    let len = der[i + 1]!;
    let lengthBytes = 1;
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n === 0 || n > 4 || i + 2 + n > to) return out;
      len = 0;
      for (let k = 0; k < n; k++) len = len * 256 + der[i + 2 + k]!;
      lengthBytes += n;
    }
    const start = i + 1 + lengthBytes;
    if (start + len > to) return out;
    const constructed = (tag & 0x20) !== 0;
    out.push({ at: i, lengthBytes, constructed });
    if (constructed) tlvs(der, start, start + len, out);
    i = start + len;
  }
  return out;
}

/** DER with random lengths: one TLV's length replaced (short, long form, indefinite, huge), its tag changed, or the value cut. */
function derMutations(seeds: readonly Buffer[]): fc.Arbitrary<Buffer> {
  const lengthForms = fc.oneof(
    fc.nat({ max: 0x7f }).map((n) => Buffer.from([n])),
    fc.constantFrom(Buffer.from([0x80]), Buffer.from([0x81, 0xff]), Buffer.from([0x84, 0xff, 0xff, 0xff, 0xff]), Buffer.from([0x88, 1, 0, 0, 0, 0, 0, 0, 0]), Buffer.from([0x82, 0x00, 0x05])),
  );
  const edit = fc.tuple(fc.nat(), fc.oneof(
    lengthForms.map((l) => ({ kind: 'length' as const, l })),
    fc.integer({ min: 0, max: 255 }).map((t) => ({ kind: 'tag' as const, t })),
    fc.nat().map((n) => ({ kind: 'cut' as const, n })),
  ));
  return fc.tuple(fc.nat({ max: seeds.length - 1 }), fc.array(edit, { minLength: 1, maxLength: 3 }), fc.boolean()).map(([i, edits, armour]) => {
    let der = seeds[i]!;
    for (const [pick, e] of edits) {
      const all = tlvs(der);
      if (all.length === 0) break;
      const h = all[pick % all.length]!;
      if (e.kind === 'length') der = Buffer.concat([der.subarray(0, h.at + 1), e.l, der.subarray(h.at + 1 + h.lengthBytes)]);
      else if (e.kind === 'tag') { der = Buffer.from(der); der[h.at] = e.t; }
      else der = der.subarray(0, h.at + 1 + h.lengthBytes + (e.n % 64));
    }
    return armour ? Buffer.from(pem(der, 'CERTIFICATE REQUEST'), 'latin1') : der;
  });
}

/** corpus/csr/ keeps PEM requests; their DER is what the structure-aware mutations work on. */
const ders = loadCorpus('csr').map((p) => p.toString('latin1')).filter((p) => p.includes('-----BEGIN'))
  .map((p) => Buffer.from(p.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64'));

export const target: FuzzTarget = {
  name: 'csr',
  what: 'agent/controlplane/csr.ts readCsr (@peculiar/x509; the PKCS#10 an agent sends for signing, PEM in a protobuf string): a Result, never a throw or a hang; an accepted request carries a verified key and string URIs',
  generators: ders.length > 0 ? [derMutations(ders)] : [],
  maxBytes: 2048,
  async run(input) {
    const r = await settlesWithin(readCsr(input.toString('utf8')), 5_000, 'readCsr');
    if (!r.ok) return check(typeof r.error === 'string' && r.error.length > 0, 'a refusal says why');
    check(Array.isArray(r.value.uris) && r.value.uris.every((u) => typeof u === 'string'), 'uris are strings');
  },
};
