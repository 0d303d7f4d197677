import * as fc from 'fast-check';
import { isIP } from 'node:net';
import { formatAuthority, parseAuthority } from '../../agent/tunnel/authority';
import { ipText, portText, text } from './gen';
import { check, mustNotThrow, type FuzzTarget } from './target';

const authority = fc.oneof(
  fc.tuple(ipText, portText).map(([ip, port]) => `${ip}:${port}`),
  fc.tuple(ipText, portText).map(([ip, port]) => `[${ip}]:${port}`),
  fc.tuple(ipText, portText, fc.constantFrom('', ':', '::', ' ', '/', '@', '%25eth0')).map(([ip, port, junk]) => `${ip}${junk}:${port}`),
);

export const target: FuzzTarget = {
  name: 'hbone-authority',
  what: 'agent/tunnel/authority.ts parseAuthority (the CONNECT :authority): a Result, never a throw; an accepted target is a valid IP and port 1-65535 that formats and parses back to itself',
  generators: [authority.map(text)],
  maxBytes: 128,
  run(input) {
    const value = input.toString('utf8');
    const parsed = mustNotThrow('parseAuthority', () => parseAuthority(value));
    if (!parsed.ok) {
      check(typeof parsed.error === 'string' && parsed.error.length > 0, 'a refusal says why');
      return;
    }
    const { ip, port } = parsed.value;
    check(isIP(ip) !== 0, `parseAuthority accepted "${value}" with ip "${ip}", not an IP address`);
    check(Number.isInteger(port) && port >= 1 && port <= 65535, `parseAuthority accepted port ${port}`);
    const again = parseAuthority(formatAuthority(parsed.value));
    check(again.ok && again.value.ip === ip && again.value.port === port, `formatAuthority(${JSON.stringify(parsed.value)}) does not parse back`);
  },
};
