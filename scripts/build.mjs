// Build: compile bpf/*.c into dist/bpf, generate the TypeScript map layouts from their BTF, run tsc.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });
const outDir = join(root, 'dist', 'bpf');
mkdirSync(outDir, { recursive: true });

const arch = execFileSync('uname', ['-m'], { encoding: 'utf8' }).trim();
const sources = readdirSync(join(root, 'bpf')).filter((f) => f.endsWith('.c'));
const objects = [];
for (const src of sources) {
  const obj = join(outDir, src.replace(/\.c$/, '.o'));
  run('clang', ['-O2', '-g', '-Wall', '-Werror', '-target', 'bpf', `-I/usr/include/${arch}-linux-gnu`,
    '-c', join('bpf', src), '-o', obj]);
  objects.push(obj);
}
run('node', ['scripts/gen-layout.mjs', 'agent/core/bpf-layout.generated.ts', ...objects]);
run(join(root, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json']);
