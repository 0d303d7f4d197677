/**
 * Closing a lab as a test: cleanup is part of what is tested, so after the lab closes no network
 * namespace of its nodes or their pods is left (so no veth, route, rule or tc link) and no pinned
 * object of its nodes.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Lab, LabNode } from '../../agent/sandbox';

export async function closeLabChecked(lab: Lab | undefined, nodes: Array<LabNode | undefined>): Promise<void> {
  const present = nodes.filter((n): n is LabNode => n !== undefined);
  const netns = present.flatMap((n) => [n.netns, ...n.pods.map((p) => p.netns)]);
  await lab?.close();
  const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  for (const ns of netns) assert.ok(!left.split('\n').some((l) => l.split(' ')[0] === ns), `netns ${ns} left behind`);
  for (const n of present) assert.equal(existsSync(`/sys/fs/bpf/weft/${n.name}`), false, `pinned objects of ${n.name} left behind`);
}
