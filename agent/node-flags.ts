/**
 * V8 flags every long-running Weft process is started with (the harness, `weft demo`, the bin
 * script's shebang, and the image's ENTRYPOINT (so the DaemonSet) repeat them: keep them in step;
 * test/unit/memory-limits.test.ts checks the ENTRYPOINT and the demo script).
 *
 * The young generation's semi-spaces grow to 16 MiB each by default. The proxy's garbage is almost
 * all short-lived (per-chunk buffers, per-connection objects), so a large young generation only
 * holds more of it. Two agents' RSS after the two-node mTLS benchmark: 455 MiB at the default,
 * 257 MiB at 4 MiB (docs/mesh.md). Per agent after the memory benchmark (1 GiB bulk, wrk keep-alive
 * and connection-per-request, test/bench/memory.ts), in three runs each: 106-118 MiB at 4 MiB,
 * 84-100 at 2 MiB, 85-94 at 1 MiB, against the 96 MiB target; idle 69-71 at 4 MiB, 67-68 at 1 MiB.
 * The agents' CPU per request did not differ beyond the noise of that shared host (docs/memory.md).
 * The old generation's limit is the deployment's to set, beside the container's memory limit
 * (daemonset/agent.yaml, NODE_OPTIONS): a flag here would override it.
 *
 * --no-parallel-scavenge: a young-generation collection is done by the main thread alone. With
 * helper threads, the main thread waits for helpers that wait for a CPU whenever the node's CPUs
 * are busy, and the pause stretches. At a fixed rate through two agents on a shared 2-vCPU host
 * (test/bench/fixed-rate.ts --probe): scavenge pauses summed 39-71 ms per run (longest up to
 * 9.1 ms) with helpers, 30-48 ms (up to 8.0) without, at load 5-7; 46-61 ms (up to 10.7) against
 * 37-40 ms (up to 2.5) at load 2-3. CPU per request unchanged within noise (docs/tail-latency.md). Major collections keep their
 * concurrent marking and sweeping threads.
 */
export const WEFT_NODE_FLAGS = ['--max-semi-space-size=1', '--no-parallel-scavenge'];
