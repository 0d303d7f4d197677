/** Small structure-aware building blocks the targets share. */
import * as fc from 'fast-check';

export const text = (s: string): Buffer => Buffer.from(s, 'utf8');

/** A port as text: in range, out of range, zero-padded, signed, empty. */
export const portText: fc.Arbitrary<string> = fc.oneof(
  fc.integer({ min: 1, max: 65535 }).map(String),
  fc.integer({ min: -10, max: 200_000 }).map(String),
  fc.constantFrom('', '0', '00080', '+80', '65536', '99999', '1e3', '0x50', ' 80', '80 ', '８０'),
);

/** An IP address as text: valid v4/v6 (several spellings), near misses, and junk. */
export const ipText: fc.Arbitrary<string> = fc.oneof(
  fc.ipV4(),
  fc.ipV6(),
  fc.ipV4Extended(),
  fc.constantFrom('::ffff:10.0.0.1', 'fe80::1%eth0', '::', '0.0.0.0', '255.255.255.255', '1.2.3', '1.2.3.4.5', '01.2.3.4', '[::1]', 'localhost', '', '::1::', '1::2::3', '999.1.1.1'),
);

/** Strings drawn mostly from `alphabet`, with occasional arbitrary characters. */
export function stringOf(alphabet: string, maxLength = 24): fc.Arbitrary<string> {
  const chars = [...alphabet];
  return fc.array(fc.oneof({ arbitrary: fc.constantFrom(...chars), weight: 9 }, { arbitrary: fc.string({ minLength: 1, maxLength: 1, unit: 'binary' }), weight: 1 }), { maxLength })
    .map((a) => a.join(''));
}
