/**
 * Raw-bytes mutation of corpus seeds, as libFuzzer's default mutators do it: flip bits, set
 * bytes to boundary values, insert, delete, duplicate and splice ranges, write big lengths.
 * Expressed as fast-check arbitraries so a failing input shrinks to fewer mutations.
 */
import * as fc from 'fast-check';

type Mutation = (input: Buffer, seeds: readonly Buffer[]) => Buffer;

const INTERESTING = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x0a, 0x0d, 0x20, 0x22, 0x25, 0x2c, 0x3a, 0x3b, 0x5b, 0x5d, 0x7b, 0x7d];
const BIG = [0x7fffffff, 0xffffffff, 0x80000000, 0x10000, 0xffff, 0x100, 0x81, 0x7f];

/** position as a fraction of the length, so one mutation means the same place as the input shrinks */
const at = (b: Buffer, where: number): number => (b.length === 0 ? 0 : Math.floor(where * b.length) % b.length);

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 0, max: 7 })).map(([w, bit]): Mutation => (b) => {
    if (b.length === 0) return b;
    const out = Buffer.from(b);
    out[at(b, w)]! ^= 1 << bit;
    return out;
  }),
  fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.constantFrom(...INTERESTING)).map(([w, v]): Mutation => (b) => {
    if (b.length === 0) return Buffer.from([v]);
    const out = Buffer.from(b);
    out[at(b, w)] = v;
    return out;
  }),
  fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.uint8Array({ minLength: 1, maxLength: 16 })).map(([w, bytes]): Mutation => (b) => {
    const i = at(b, w);
    return Buffer.concat([b.subarray(0, i), bytes, b.subarray(i)]);
  }),
  fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 1, max: 64 })).map(([w, n]): Mutation => (b) => {
    const i = at(b, w);
    return Buffer.concat([b.subarray(0, i), b.subarray(i + n)]);
  }),
  fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 8 })).map(([w, n, times]): Mutation => (b) => {
    const i = at(b, w);
    const piece = b.subarray(i, i + n);
    return Buffer.concat([b.subarray(0, i), ...Array<Buffer>(times + 1).fill(piece), b.subarray(i + n)]);
  }),
  fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.constantFrom(...BIG), fc.boolean()).map(([w, v, le]): Mutation => (b) => {
    if (b.length < 4) return b;
    const out = Buffer.from(b);
    const i = Math.min(at(b, w), b.length - 4);
    if (le) out.writeUInt32LE(v, i); else out.writeUInt32BE(v, i);
    return out;
  }),
  fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.nat(), fc.double({ min: 0, max: 1, noNaN: true })).map(([w, s, w2]): Mutation => (b, seeds) => {
    // splice: our head, another seed's tail
    const other = seeds[s % seeds.length] ?? b;
    return Buffer.concat([b.subarray(0, at(b, w)), other.subarray(at(other, w2))]);
  }),
  fc.double({ min: 0, max: 1, noNaN: true }).map((w): Mutation => (b) => b.subarray(0, at(b, w))),
);

/** A seed from `seeds` with 1-8 mutations applied; `maxBytes` caps what duplication may grow. */
export function mutatedSeeds(seeds: readonly Buffer[], maxBytes: number): fc.Arbitrary<Buffer> {
  if (seeds.length === 0) throw new Error('mutatedSeeds: the corpus is empty');
  return fc.tuple(fc.nat({ max: seeds.length - 1 }), fc.array(mutation, { minLength: 1, maxLength: 8 }))
    .map(([i, ops]) => ops.reduce<Buffer>((b, op) => { const next = op(b, seeds); return next.length > maxBytes ? next.subarray(0, maxBytes) : next; }, seeds[i]!));
}

/** The inputs a target is fed: its own generators, mutated seeds, seeds as they are, random bytes. */
export function inputsFor(seeds: readonly Buffer[], generators: readonly fc.Arbitrary<Buffer>[], maxBytes: number): fc.Arbitrary<Buffer> {
  const raw = fc.uint8Array({ maxLength: maxBytes }).map((u) => Buffer.from(u));
  const arms: Array<{ arbitrary: fc.Arbitrary<Buffer>; weight: number }> = [{ arbitrary: raw, weight: 1 }];
  for (const g of generators) arms.push({ arbitrary: g, weight: 4 });
  if (seeds.length > 0) {
    arms.push({ arbitrary: fc.constantFrom(...seeds), weight: 1 });
    arms.push({ arbitrary: mutatedSeeds(seeds, Math.max(maxBytes, ...seeds.map((s) => s.length * 2))), weight: 6 });
  }
  return fc.oneof(...arms);
}
