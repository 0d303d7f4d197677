import { GrpcChannel, type Call, type ChannelOptions, type GrpcError } from '../core/grpc-client';
import { GrpcStatus, statusName } from '../core/grpc-status';
import { controlPlaneTls } from '../identity/control-plane-tls';
import type { Snapshot } from '../config/objects';
import { decodeDeltaResponse, encodeWatchRequestV2, WATCH_V2_PATH, type DeltaResponse } from '../controlplane/discovery-proto';
import { ChunkAssembler } from '../controlplane/discovery-chunks';
import { DiscoveryState } from '../controlplane/discovery-state';
import { decodeVersionedSnapshot, encodeJson, WATCH_PATH, type VersionedSnapshot } from '../controlplane/discovery-wire';
import type { Logger } from '../core/log';
import type { Result } from '../core/result';
import { current, type Live } from '../identity/cert-client';
import { DELTA_TYPE_URL, SNAPSHOT_TYPE_URL, TERMINATION_REASONS, terminationReason, type StreamEnding, type TerminationReason } from '../telemetry/control-plane-stream';

export interface DiscoveryConnection {
  /** host:port; the host must be in the control plane's serving certificate. */
  address: string;
  /** The control plane's ca.pem; a changed bundle is used from the next reconnect. */
  caPem: Live<string>;
  /** Bootstrap token (local mode) or the agent's ServiceAccount token (Kubernetes); read again for every (re)connect. */
  token: Live<string>;
  node: string;
}

export interface DiscoveryWatch {
  close(): void;
  /** A stream is open and has delivered its first snapshot. */
  connected(): boolean;
  /**
   * Version of the last message applied; 0 before the first. A change that does not touch this
   * node's view sends it nothing, so agents of one cluster may show different versions.
   */
  lastVersion(): number;
  /** Streams ended (not by close()), by ztunnel's reason (telemetry/control-plane-stream.ts). */
  terminations(): Readonly<Record<TerminationReason, number>>;
  /** Messages received, by type URL: full states under SNAPSHOT_TYPE_URL, deltas under DELTA_TYPE_URL. */
  messages(): Readonly<Record<string, number>>;
  /** Bytes of every message received (protobuf, before decoding), over all streams. */
  bytesReceived(): number;
  /** v2 responses received, every chunk counted (messages() counts each sequence once, when applied). */
  responsesReceived(): number;
  /** Streams that opened with a delta from the agent's last version instead of the full state. */
  resumes(): number;
}

const INITIAL_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 10_000;

/** Channel options: detect a silent peer (the watch reconnects itself, at its own backoff). */
const CHANNEL_OPTIONS: ChannelOptions = {
  keepaliveTimeMs: 30_000,
  keepaliveTimeoutMs: 10_000,
  /**
   * gRPC's usual limit: the control plane sends large full states and deltas in chunks of
   * 512 KiB of resources (controlplane/discovery-chunks.ts); one resource larger than a chunk goes
   * alone, so the largest one accepted is 4 MiB less a header of about 100 bytes.
   */
  maxReceiveBytes: 4 * 1024 * 1024,
};

/** Full jitter on the upper half: spreads a fleet of agents reconnecting to a restarted control plane. */
function jittered(ms: number): number {
  return ms / 2 + Math.random() * (ms / 2);
}

/**
 * Keeps a v2 Watch stream (controlplane/discovery-proto.ts) to the control plane open: the node's
 * view arrives as a full state, then as deltas, applied to a keyed state (discovery-state.ts); the
 * Snapshot rebuilt from it after every message goes to `onSnapshot`; a message sent in chunks is
 * applied once, when its last chunk has arrived (controlplane/discovery-chunks.ts). A reconnect presents the
 * epoch and version held, so the same control plane resumes with a delta; another one (or one
 * whose history no longer reaches back that far) sends the full state. A message that cannot be
 * read or applied is refused (logged), the stream reopened, the state kept. A control plane of the
 * release before v2 (UNIMPLEMENTED) is watched over v1, whole snapshots, until that stream ends. On
 * error or end the stream is reopened with exponential backoff (250 ms doubling to 10 s, jittered)
 * and the last snapshot stays in force meanwhile: the agent never drops state because the control
 * plane went away. Connection state changes are logged once each, not per retry. Every (re)connect
 * presents the token as it is then (a projected token rotates), and a changed trust bundle is used
 * from the next reconnect on; an open stream is not cut for either.
 */
export function watchControlPlane(connection: DiscoveryConnection, onSnapshot: (s: Snapshot) => void, log: Logger): DiscoveryWatch {
  let client: GrpcChannel | undefined;
  /** The bundle `client` verifies the control plane with: a channel's TLS roots are fixed, so a new bundle needs a new channel. */
  let clientCaPem = '';
  const channel = (): GrpcChannel => {
    const caPem = current(connection.caPem);
    if (client === undefined || caPem !== clientCaPem) {
      if (client !== undefined) log.info({ controlPlane: connection.address }, 'the control plane CA file changed; reconnecting with the new trust bundle');
      client?.close();
      client = new GrpcChannel(controlPlaneTls(connection.address, caPem), CHANNEL_OPTIONS);
      clientCaPem = caPem;
    }
    return client;
  };
  const where = { controlPlane: connection.address, node: connection.node };
  let call: Call | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let backoff = INITIAL_BACKOFF_MS;
  let isConnected = false;
  let lastVersion = 0;
  const terminations = Object.fromEntries(TERMINATION_REASONS.map((r) => [r, 0])) as Record<TerminationReason, number>;
  let snapshots = 0;
  let deltas = 0;
  let bytes = 0;
  let responses = 0;
  let resumes = 0;
  let state = new DiscoveryState();
  /**
   * 'v1' after a control plane answered UNIMPLEMENTED to v2 (a release before it, during a rolling
   * upgrade): whole snapshots from it until that stream ends, then v2 is tried again.
   */
  let protocol: 'v1' | 'v2' = 'v2';
  /** The last failure reported, so a control plane that stays away is logged once. */
  let reported: string | undefined;
  let closed = false;

  const disconnected = (reason: string, ending: StreamEnding): void => {
    call = undefined;
    if (closed) return;
    terminations[terminationReason(ending)]++;
    if (isConnected) log.warn({ ...where, reason, lastVersion }, 'lost the control plane; keeping the last snapshot and reconnecting');
    else if (reported !== reason) log.warn({ ...where, reason }, 'cannot watch the control plane; retrying with backoff');
    isConnected = false;
    reported = reason;
    retryTimer = setTimeout(open, jittered(backoff));
    backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
  };

  /** A message applied (v1 or v2): the stream is healthy; its first is logged, and the backoff starts over. */
  const receiving = (version: number, start: string): void => {
    if (!isConnected) log.info({ ...where, version, start }, 'watching the control plane');
    isConnected = true;
    reported = undefined;
    backoff = INITIAL_BACKOFF_MS;
    lastVersion = version;
  };

  /** A message that cannot be applied: the last state stays in force; the stream is cancelled and reopened. */
  const unreadable = (stream: { cancel(): void }, reason: string, end: (reason: string, ending: StreamEnding) => void): void => {
    log.warn({ ...where, reason, lastVersion }, 'refused a message from the control plane; keeping the last state and reopening the stream');
    stream.cancel();
    end(`the control plane sent ${reason}`, { kind: 'unreadable' });
  };

  function open(): void {
    retryTimer = undefined;
    if (closed) return;
    const metadata = { authorization: `Bearer ${current(connection.token)}`, 'weft-node': connection.node };
    if (protocol === 'v1') {
      openV1(metadata);
      return;
    }
    const resume = state.resumePoint();
    const request = resume === undefined ? { node: connection.node } : { node: connection.node, resume };
    let ended = false;
    let delivered = false;
    const end = (reason: string, ending: StreamEnding): void => {
      if (ended) return;
      ended = true;
      if (call === stream) disconnected(reason, ending);
    };
    /** This stream's sequence in progress: dropped with the stream, so a break mid-sequence leaves the state (and resume point) as it was. */
    const chunks = new ChunkAssembler();
    const stream: Call = channel().serverStream(WATCH_V2_PATH, encodeWatchRequestV2(request), metadata, {
      message(bytesOfMessage) {
        if (ended) return;
        bytes += bytesOfMessage.length;
        responses++;
        const message = decodeDeltaResponse(bytesOfMessage);
        const whole = message.ok ? chunks.add(message.value) : message;
        if (whole.ok && whole.value === undefined) return;
        const applied = whole.ok ? state.apply(whole.value!) : whole;
        if (!applied.ok) return unreadable(stream, applied.error, end);
        const m = (whole as { ok: true; value: DeltaResponse }).value;
        if (!delivered && !m.fullState) resumes++;
        receiving(m.systemVersion, m.fullState ? 'full state' : `resumed from ${m.baseVersion}`);
        delivered = true;
        if (m.fullState) snapshots++;
        else deltas++;
        onSnapshot(applied.value);
      },
      error(error: GrpcError) {
        if (error.code === GrpcStatus.UNIMPLEMENTED && !delivered && !ended && call === stream) {
          ended = true;
          call = undefined;
          log.warn({ ...where }, 'the control plane does not serve discovery v2 (a release before it): watching its v1 whole snapshots until it is upgraded');
          protocol = 'v1';
          open();
          return;
        }
        end(`${statusName(error.code)}: ${error.details}`, { kind: 'status', code: error.code, delivered });
      },
      end: () => end('the control plane ended the stream', { kind: 'end' }),
    });
    call = stream;
  }

  /** v1: whole snapshots, each the state in force; the keyed state is dropped so the next v2 stream starts in full. */
  function openV1(metadata: Record<string, string>): void {
    let ended = false;
    let delivered = false;
    const end = (reason: string, ending: StreamEnding): void => {
      if (ended) return;
      ended = true;
      protocol = 'v2';
      if (call === stream) disconnected(reason, ending);
    };
    const stream: Call = channel().serverStream(WATCH_PATH, encodeJson({ node: connection.node }), metadata, {
      message(bytesOfMessage) {
        if (ended) return;
        bytes += bytesOfMessage.length;
        const message: Result<VersionedSnapshot, string> = decodeVersionedSnapshot(bytesOfMessage);
        if (!message.ok) return unreadable(stream, message.error, end);
        receiving(message.value.version, 'v1 whole snapshot');
        delivered = true;
        state = new DiscoveryState();
        snapshots++;
        onSnapshot(message.value.snapshot);
      },
      error: (error: GrpcError) => end(`${statusName(error.code)}: ${error.details}`, { kind: 'status', code: error.code, delivered }),
      end: () => end('the control plane ended the stream', { kind: 'end' }),
    });
    call = stream;
  }

  open();
  return {
    close() {
      closed = true;
      if (retryTimer !== undefined) clearTimeout(retryTimer);
      call?.cancel();
      client?.close();
    },
    connected: () => isConnected,
    lastVersion: () => lastVersion,
    terminations: () => terminations,
    messages: () => ({ [SNAPSHOT_TYPE_URL]: snapshots, [DELTA_TYPE_URL]: deltas }),
    bytesReceived: () => bytes,
    responsesReceived: () => responses,
    resumes: () => resumes,
  };
}
