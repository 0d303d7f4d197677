/**
 * The V8 heap limits every place that starts a Weft process gives (docs/memory.md): the young
 * generation's cap (agent/node-flags.ts) repeated by the image's ENTRYPOINT, the bin script's
 * shebang and the demo script; the old generation's cap set by the DaemonSet beside the container's
 * memory limit, and not overridden by a command-line flag.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { WEFT_NODE_FLAGS } from '../../agent/node-flags';

const ROOT = join(__dirname, '..', '..', '..');
const read = (p: string) => readFileSync(join(ROOT, p), 'utf8');

/** Node's flags in a command line that starts `node` (or `env -S node`): what comes before the script (a shebang has none). */
function nodeFlags(argv: string[]): string[] {
  const at = argv.findIndex((a) => a === 'node' || a.endsWith('/node'));
  assert.ok(at >= 0, `${JSON.stringify(argv)} starts node`);
  const rest = argv.slice(at + 1);
  const script = rest.findIndex((a) => !a.startsWith('--'));
  return script < 0 ? rest : rest.slice(0, script);
}

test('the image, the bin script and the demo start node with WEFT_NODE_FLAGS', () => {
  const entry = /^ENTRYPOINT (\[.*\])$/m.exec(read('Dockerfile'));
  assert.ok(entry, 'the Dockerfile has a JSON-form ENTRYPOINT');
  assert.deepEqual(nodeFlags(JSON.parse(entry[1]!) as string[]), WEFT_NODE_FLAGS, 'Dockerfile ENTRYPOINT');
  const shebang = read('agent/cli.ts').split('\n')[0]!;
  assert.deepEqual(nodeFlags(shebang.replace(/^#!/, '').split(/\s+/)), WEFT_NODE_FLAGS, `agent/cli.ts shebang: ${shebang}`);
  const demo = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.demo!;
  assert.deepEqual(nodeFlags(demo.split('&&').at(-1)!.trim().split(/\s+/)), WEFT_NODE_FLAGS, `package.json scripts.demo: ${demo}`);
});

test('the DaemonSet caps the old generation below the container memory limit, and nothing on the command line overrides it', () => {
  const ds = parse(read('daemonset/agent.yaml')) as { spec: { template: { spec: { containers: Array<Record<string, unknown>> } } } };
  const agent = ds.spec.template.spec.containers.find((c) => c.name === 'agent')!;
  const env = (agent.env as Array<{ name: string; value?: string }>).find((e) => e.name === 'NODE_OPTIONS');
  assert.ok(env?.value, 'the agent container sets NODE_OPTIONS');
  const oldSpace = /--max-old-space-size=(\d+)/.exec(env.value);
  assert.ok(oldSpace, `NODE_OPTIONS sets --max-old-space-size: ${env.value}`);
  const limit = /^(\d+)Mi$/.exec(String((agent.resources as { limits: { memory: string } }).limits.memory));
  assert.ok(limit, 'the container memory limit is given in Mi');
  // The rest of the limit holds the node binary's pages, native memory and the young generation.
  assert.ok(Number(oldSpace[1]) <= Number(limit[1]) / 2, `old generation ${oldSpace[1]} MiB is at most half the ${limit[1]} MiB limit`);
  // Command-line flags win over NODE_OPTIONS.
  assert.ok(!WEFT_NODE_FLAGS.some((f) => f.startsWith('--max-old-space-size')), 'WEFT_NODE_FLAGS leaves the old generation to the deployment');
  assert.equal(agent.command, undefined, 'the image\'s ENTRYPOINT starts the agent');
});
