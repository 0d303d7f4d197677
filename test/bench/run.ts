/** `npm run bench`: runs each benchmark in its own process, in order; each prints its own ratios. */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const benches = ['redirect.js', 'mtls-hop.js', 'http-hop.js', 'same-node.js', 'x509.js', 'policy.js', 'routes.js', 'service-route.js', 'telemetry-cost.js', 'memory.js', 'connection-floor.js', 'controlplane.js'].map((f) => join(__dirname, f)).filter(existsSync);
let failed = 0;
for (const b of benches) {
  const r = spawnSync(process.execPath, [b], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
