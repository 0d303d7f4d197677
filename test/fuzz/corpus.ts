/** The seed corpus kept in the repository: test/fuzz/corpus/<target>/<file>, one input per file, raw bytes. */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The source tree's corpus, found from the compiled file (dist/test/fuzz) or the source (test/fuzz). */
export function corpusRoot(): string {
  for (const candidate of [join(__dirname, '..', '..', '..', 'test', 'fuzz', 'corpus'), join(__dirname, 'corpus')]) {
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`fuzz corpus not found next to ${__dirname} (expected test/fuzz/corpus in the repository)`);
}

export function loadCorpus(target: string): Buffer[] {
  const dir = join(corpusRoot(), target);
  if (!existsSync(dir)) return [];
  return readdirSync(dir).sort().map((f) => readFileSync(join(dir, f)));
}

/** Keeps `input` as `<prefix>-<sha256 prefix>`; returns the path. */
export function saveToCorpus(target: string, input: Buffer, prefix: string): string {
  const dir = join(corpusRoot(), target);
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${prefix}-${createHash('sha256').update(input).digest('hex').slice(0, 16)}`);
  writeFileSync(path, input);
  return path;
}

/** How a failing input is shown: its length, base64 (to paste into a corpus file), and a readable preview. */
export function describeInput(input: Buffer, previewBytes = 512): string {
  const preview = JSON.stringify(input.subarray(0, previewBytes).toString('latin1'));
  const base64 = input.length <= 64 * 1024 ? input.toString('base64') : `(${input.length} bytes: too long to print)`;
  return `${input.length} bytes\n  text: ${preview}${input.length > previewBytes ? ' ...' : ''}\n  base64: ${base64}`;
}
