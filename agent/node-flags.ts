/**
 * V8 flags every long-running Weft process is started with (the harness, `weft demo`, the bin
 * script's shebang, and the image's ENTRYPOINT (so the DaemonSet) repeat them: keep them in step).
 *
 * The young generation's semi-spaces grow to 16 MiB each by default. The proxy's garbage is almost
 * all short-lived (per-chunk buffers, per-connection objects), so a large young generation only
 * holds more of it: on the two-node mTLS benchmark the two agents' RSS after 1 GiB plus 10 s of wrk
 * was 455 MiB at the default, 257 MiB at 4 MiB and 213 MiB at 2 MiB, while bulk and req/s were
 * within run-to-run noise at 4 MiB and lower at 2 MiB (docs/mesh.md).
 */
export const WEFT_NODE_FLAGS = ['--max-semi-space-size=4'];
