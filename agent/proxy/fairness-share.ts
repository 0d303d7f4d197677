/**
 * Fair sharing of the node proxy between accounts (fairness.ts says what an account is and holds
 * the decisions). Three mechanisms, all per account:
 *
 * - Admission: a new connection is refused (reset) when its account holds maxConnectionsPerPod, has
 *   maxPendingPerPod being set up, or is shed; every refusal is published on the overload-shed
 *   channel (`weft_overload_shed_total{pod_namespace,pod_name,reason}`) and the caller writes its access-log line.
 * - Reads: each socket of the account is gated below Node's stream layer (its handle's onread), so
 *   every reader (pump, the HTTP parser, a sniffer) is covered alike. Once the account has read
 *   readBudgetBytes in this turn of the event loop, its sockets stop reading until the next turn:
 *   libuv otherwise reads up to 32 x 64 KiB from one socket per wakeup, and a turn spent moving one
 *   pod's bulk delays every other pod's bytes by as much.
 * - Overload: the event loop's lag is sampled every LAG_SAMPLE_MS. Above overloadLagMs the noisiest
 *   account (fairness.ts chooseShed) is shed for shedMs: its reads are held and its new connections
 *   refused, so the proxy stops spending the CPU it gets on it and serves the others first.
 */
import type { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';
import type { Arrival } from './deliver';
import { overloadShed, type OverloadShedEvent } from '../telemetry/events';
import { addNoise, admitConnection, BUSY_WITHIN_MS, chargeWindow, chooseShed, isBusy, DEFAULT_FAIRNESS, isOverloaded, MIN_SHED_NOISE, noiseAt, shedDuration, CONNECTION_COST_BYTES, type Admission, type BusyWindow, type FairnessConfig, type Noise, type ShedReason } from './fairness';

/** An account as telemetry names it. */
export interface AccountRef {
  /** unique: `namespace/pod`, `identity`, or an address */
  key: string;
  namespace: string;
  /** the pod's name; for an account that is not a pod, its identity or address */
  pod: string;
}

/** The libuv stream handle under a net.Socket, as far as the gate uses it (Node 20 internals). */
interface StreamHandle {
  onread: (...args: unknown[]) => unknown;
  readonly bytesRead: number;
  reading: boolean;
  readStart(): number;
  readStop(): number;
}

interface Held { socket: Socket; handle: StreamHandle }

interface Account {
  ref: AccountRef;
  open: number;
  pending: number;
  noise: Noise;
  /** what it was charged lately: whether it is busy now (fairness.ts isBusy) */
  busy: BusyWindow;
  turnBytes: number;
  held: Held[];
  /** shed until this time (performance.now()), 0: not shed */
  shedUntil: number;
  /**
   * After a shed, until this time: the account's budget is per lag sample (LAG_SAMPLE_MS), not per
   * turn, so it cannot make the proxy busy without a pause again the moment it is released.
   */
  probationUntil: number;
  /** the last shed: how long it lasted and when it ended (shedDuration) */
  lastShed?: { ms: number; endedAt: number };
  /** sheds not yet reported, and when one was last reported (the report is rate-limited) */
  unreported: number;
  reportedAt: number;
}

/** A connection admitted for an account: tell it when its upstream is open, and when it ends. */
export interface Ticket {
  readonly account: AccountRef;
  /** set up: no longer pending (idempotent) */
  ready(): void;
  /** ended (idempotent; also ends pending) */
  close(): void;
  /** close() when `emitter` emits 'close' */
  closeOn(emitter: EventEmitter): void;
}

/**
 * A Ticket as one object per connection (it was a context and two closures: about 0.25 KiB an open
 * connection held, docs/memory.md). It rides on the connection's Arrival to its upstream
 * (attachUpstream), never looked up by the client's address: two connections of a pod can share
 * one (docs/capture-ports.md).
 */
class AdmittedTicket implements Ticket {
  private pending = true;
  private open = true;

  constructor(readonly state: Account) {}

  get account(): AccountRef {
    return this.state.ref;
  }

  ready(): void {
    if (!this.pending) return;
    this.pending = false;
    this.state.pending--;
  }

  close(): void {
    this.ready();
    if (this.open) {
      this.open = false;
      this.state.open--;
    }
  }

  closeOn(emitter: EventEmitter): void {
    (emitter as Ticketed)[kTicket] = this;
    emitter.on('close', onTicketedClose);
  }
}

const kTicket = Symbol('weft.ticket');
type Ticketed = EventEmitter & { [kTicket]?: Ticket };

/** One listener for every ticketed socket: no closure per connection. */
function onTicketedClose(this: Ticketed): void {
  this[kTicket]!.close();
}

export const LAG_SAMPLE_MS = 10;
/**
 * Quiet lag samples in a row (1 s) after which sampling pauses until the next connection or read.
 * With this sampler and the health gauge's own event-loop monitor always on, an idle agent's main
 * thread woke 148 times a second; with the gauge reading these samples and this pause, 3
 * (docs/fairness.md).
 */
export const QUIET_SAMPLES_TO_PAUSE = 100;
/**
 * Lag samples in a row above overloadLagMs before the noisiest pod is shed. A single 28-30 ms stall
 * (TLS handshakes, a snapshot applied) shed a pod that had finished a 1 GiB transfer two seconds
 * earlier and reset its next connection (mesh-tunnel.test.ts); under a real flood the lag stays up.
 */
export const OVERLOADED_SAMPLES = 2;
/** How long an account stays on probation after a shed, in multiples of that shed's length. */
const PROBATION_FACTOR = 4;
/** A shed account is reported (onShed) at most this often; the report says how many sheds it covers. */
const REPORT_EVERY_MS = 10_000;
/** Connections refused while their pod is shed are reset when the shed ends, at most this many held at once (then at once). */
const MAX_TARPIT = 1024;
/** Accounts with nothing open whose noise decayed below this are forgotten (bounded memory). */
const FORGET_BELOW = 1;

const handleOf = (s: Socket): StreamHandle | undefined => {
  const h = (s as unknown as { _handle?: StreamHandle | null })._handle;
  return h && typeof h.onread === 'function' && typeof h.readStop === 'function' ? h : undefined;
};

/** A gated socket's state, on its handle: one object, where a context and two closures per socket were. */
interface Gate {
  share: FairShare;
  account: Account;
  socket: Socket;
  /** the handle's own onread, called first */
  read: (...args: unknown[]) => unknown;
  /** the handle's bytesRead when last charged */
  last: number;
}
const kGate = Symbol('weft.fairnessGate');
type GatedHandle = StreamHandle & { [kGate]?: Gate };

/** Every gated handle's onread (called on the handle): reads as before, then charges what it read to the socket's account. */
function gatedRead(this: GatedHandle, ...args: unknown[]): unknown {
  const g = this[kGate]!;
  const r = g.read.apply(this, args);
  const total = this.bytesRead;
  const n = total - g.last;
  g.last = total;
  if (n > 0) g.share.charge(g.account, n, g.socket, this);
  return r;
}

export class FairShare {
  private readonly accounts = new Map<string, Account>();
  /** accounts that read in this turn, reset at its end */
  private readonly touched = new Set<Account>();
  private turnScheduled = false;
  private turnNow = 0;
  private timer: NodeJS.Timeout | undefined;
  /** start() called and stop() not: sampling is wanted, though paused while all is quiet (timer unset) */
  private started = false;
  private lastSample = 0;
  private samples = 0;
  /** samples in a row that saw no traffic and no account waiting on a sample */
  private quietSamples = 0;
  /** `moved` at the last sample */
  private movedAtSample = 0;
  /** every lag sample in ns (the health gauge `weft_agent_event_loop_delay_seconds` reads and resets it) */
  readonly lagHistogram: RecordableHistogram = createHistogram();
  /** consecutive lag samples above overloadLagMs: one stall (a GC, a burst of handshakes) is not an overload */
  private overloadedRun = 0;
  /** the largest lag seen since the last read of `maxLag()` */
  private lagMax = 0;
  /** refused connections of shed accounts waiting for their reset */
  private tarpitted = 0;
  /** bytes read and connections admitted or refused, ever: whether traffic moved between two looks (activity()) */
  private moved = 0;

  constructor(
    private readonly config: () => FairnessConfig = () => DEFAULT_FAIRNESS,
    private readonly onShed: (account: AccountRef, lagMs: number, c: FairnessConfig, sheds: number, shedMs: number) => void = () => undefined,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /**
   * Starts sampling the event loop's lag (unref'd: it keeps nothing alive). Sampling pauses after
   * QUIET_SAMPLES_TO_PAUSE samples with no traffic and no account waiting on a sample, and starts
   * again at the next connection or read: an idle agent is not woken 100 times a second.
   */
  start(): this {
    if (this.started) return this;
    this.started = true;
    this.arm();
    return this;
  }

  stop(): void {
    this.started = false;
    this.disarm();
  }

  /** Whether the lag sampler's timer runs now (started and not paused for quiet). */
  get sampling(): boolean {
    return this.timer !== undefined;
  }

  private arm(): void {
    // The time paused is no lag: the first sample measures from here.
    this.lastSample = this.now();
    this.quietSamples = 0;
    this.overloadedRun = 0;
    this.timer = setInterval(() => this.sample(), LAG_SAMPLE_MS);
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** A count that grows with every byte the gated sockets read and every connection admitted or refused: unchanged means no traffic. */
  activity(): number {
    return this.moved;
  }

  /** The largest event-loop lag sampled since the last call (ms). */
  maxLag(): number {
    const m = this.lagMax;
    this.lagMax = 0;
    return m;
  }

  /**
   * Takes on (or refuses) a new connection of `ref`. A refusal is published (overload-shed
   * channel); the caller refuses the connection with refuse() and logs it.
   */
  admit(ref: AccountRef): { ok: true; ticket: Ticket } | { ok: false; refusal: Extract<Admission, { admit: false }> } {
    this.moved++;
    if (this.timer === undefined && this.started) this.arm();
    const c = this.config();
    const a = this.account(ref);
    const now = this.now();
    const shed = a.shedUntil > now;
    // On probation a new connection costs a whole sample's budget: connections, not bytes, are what a flood spends the proxy on.
    const probation = !shed && a.probationUntil > now;
    const decision = admitConnection(ref.key, { open: a.open, pending: a.pending, shed, throttled: probation && a.turnBytes >= c.readBudgetBytes }, c);
    a.noise = addNoise(a.noise, now, CONNECTION_COST_BYTES);
    a.busy = chargeWindow(a.busy, now, CONNECTION_COST_BYTES);
    if (!decision.admit) {
      this.publish(a.ref, decision.reason);
      return { ok: false, refusal: decision };
    }
    if (probation) a.turnBytes += c.readBudgetBytes;
    a.open++;
    a.pending++;
    return { ok: true, ticket: new AdmittedTicket(a) };
  }

  /**
   * Resets a refused connection: at once for a limit; for a shed account when its shed ends (the
   * socket is not read meanwhile), so a client that reconnects as soon as it is reset cannot turn
   * refusals into a busy loop for the proxy while it is overloaded. At most MAX_TARPIT wait.
   */
  refuse(socket: Socket, ref: AccountRef, reason: ShedReason): void {
    const a = this.accounts.get(ref.key);
    const now = this.now();
    // Shed: until the shed ends; on probation: a shed's length at most.
    const wait = reason !== 'overload' || !a ? 0 : a.shedUntil > now ? a.shedUntil - now : Math.min(a.probationUntil - now, a.lastShed?.ms ?? 0);
    if (wait <= 0 || this.tarpitted >= MAX_TARPIT) return void (socket.destroyed || socket.resetAndDestroy());
    this.tarpitted++;
    const timer = setTimeout(() => { if (!socket.destroyed) socket.resetAndDestroy(); }, Math.ceil(wait));
    socket.once('close', () => { clearTimeout(timer); this.tarpitted--; });
  }

  /** Gates a socket's reads by `ref`'s budget (both directions of a connection are charged to its opener). */
  gate(socket: Socket, ref: AccountRef): void {
    this.gateAccount(socket, this.account(ref));
  }

  /**
   * An upstream socket opened for the connection holding `ticket`: it is charged to the ticket's
   * account (and the connection is set up now); with no ticket, to `fallback`.
   */
  attachUpstream(socket: Socket, ticket: Ticket | undefined, fallback: () => AccountRef): void {
    if (ticket) {
      ticket.ready();
      this.gateAccount(socket, ticket instanceof AdmittedTicket ? ticket.state : this.account(ticket.account));
    } else {
      this.gateAccount(socket, this.account(fallback()));
    }
  }

  /** Open and pending connections and whether it is shed, per account (admin and tests). */
  snapshot(): Array<{ account: string; open: number; pending: number; shed: boolean; noise: number }> {
    const now = this.now();
    return [...this.accounts.values()].map((a) => ({ account: a.ref.key, open: a.open, pending: a.pending, shed: a.shedUntil > now, noise: Math.round(noiseAt(a.noise, now)) }));
  }

  private account(ref: AccountRef): Account {
    let a = this.accounts.get(ref.key);
    if (!a) {
      a = { ref, open: 0, pending: 0, noise: { score: 0, at: this.now() }, busy: { since: this.now(), bytes: 0 }, turnBytes: 0, held: [], shedUntil: 0, probationUntil: 0, unreported: 0, reportedAt: -Infinity };
      this.accounts.set(ref.key, a);
    }
    return a;
  }

  private gateAccount(socket: Socket, a: Account): void {
    const h = handleOf(socket);
    if (!h) return;
    (h as GatedHandle)[kGate] = { share: this, account: a, socket, read: h.onread, last: h.bytesRead };
    h.onread = gatedRead;
  }

  /** @internal for gatedRead: `n` more bytes read by a gated socket of `a`. */
  charge(a: Account, n: number, socket: Socket, h: StreamHandle): void {
    this.moved += n;
    if (this.timer === undefined && this.started) this.arm();
    if (!this.turnScheduled) {
      this.turnScheduled = true;
      this.turnNow = this.now();
      setImmediate(this.endTurn);
    }
    this.touched.add(a);
    a.turnBytes += n;
    a.noise = addNoise(a.noise, this.turnNow, n);
    a.busy = chargeWindow(a.busy, this.turnNow, n);
    const shed = a.shedUntil > this.turnNow;
    if (!shed && a.turnBytes < this.config().readBudgetBytes) return;
    if (socket.destroyed) return;
    h.readStop();
    a.held.push({ socket, handle: h });
  }

  private readonly endTurn = (): void => {
    this.turnScheduled = false;
    const now = this.now();
    for (const a of this.touched) {
      // On probation the budget is per lag sample: sample() resets and releases.
      if (a.probationUntil > now) continue;
      a.turnBytes = 0;
      if (a.shedUntil <= now) this.release(a);
    }
    this.touched.clear();
  };

  private release(a: Account): void {
    if (a.held.length === 0) return;
    const held = a.held;
    a.held = [];
    // Node still believes it reads such a socket (`reading`); one it stopped itself meanwhile (backpressure) it restarts itself.
    for (const { socket, handle } of held) if (!socket.destroyed && handle.reading) handle.readStart();
  }

  private sample(): void {
    const now = this.now();
    const lag = Math.max(0, now - this.lastSample - LAG_SAMPLE_MS);
    this.lastSample = now;
    if (lag > this.lagMax) this.lagMax = lag;
    this.lagHistogram.record(Math.max(1, Math.round(lag * 1e6)));
    const c = this.config();
    this.overloadedRun = isOverloaded(lag, c) ? this.overloadedRun + 1 : 0;
    if (this.overloadedRun >= OVERLOADED_SAMPLES) this.shedNoisiest(now, lag, c);
    let waiting = false;
    for (const a of this.accounts.values()) {
      if (a.shedUntil > 0 && a.shedUntil <= now) a.shedUntil = 0;
      if (a.shedUntil === 0 && (a.probationUntil > 0 || a.held.length > 0)) {
        if (a.probationUntil <= now) a.probationUntil = 0;
        a.turnBytes = 0;
        this.release(a);
      }
      if (a.shedUntil > 0 || a.probationUntil > 0 || a.held.length > 0) waiting = true;
    }
    if (++this.samples % 100 === 0) this.forget(now);
    const quiet = !waiting && this.moved === this.movedAtSample && this.overloadedRun === 0;
    this.movedAtSample = this.moved;
    this.quietSamples = quiet ? this.quietSamples + 1 : 0;
    if (this.quietSamples >= QUIET_SAMPLES_TO_PAUSE) this.disarm();
  }

  private shedNoisiest(now: number, lag: number, c: FairnessConfig): void {
    const scores = new Map<string, number>();
    const proven = new Set<string>();
    const recent = new Set<string>();
    for (const a of this.accounts.values()) {
      if (a.shedUntil > now) return; // one account at a time: the noisiest is shed already
      const s = noiseAt(a.noise, now);
      if (s >= FORGET_BELOW) scores.set(a.ref.key, s);
      if (a.probationUntil > now) proven.add(a.ref.key);
      // On probation it has been shed for overload already: any charge lately counts it busy again.
      if (isBusy(a.busy, now) || (a.probationUntil > now && now - a.noise.at <= BUSY_WITHIN_MS)) recent.add(a.ref.key);
    }
    const key = chooseShed(scores, 2, MIN_SHED_NOISE, proven, recent);
    const a = key === undefined ? undefined : this.accounts.get(key);
    if (!a) return;
    const ms = shedDuration(a.lastShed, now, c);
    a.shedUntil = now + ms;
    a.probationUntil = a.shedUntil + PROBATION_FACTOR * ms;
    // Shed again on probation or within shedMs after it: the pod brought the overload back, so twice as long.
    a.lastShed = { ms, endedAt: a.probationUntil };
    a.unreported++;
    if (now - a.reportedAt >= REPORT_EVERY_MS) {
      this.onShed(a.ref, lag, c, a.unreported, ms);
      a.unreported = 0;
      a.reportedAt = now;
    }
  }

  private forget(now: number): void {
    for (const [key, a] of this.accounts) {
      if (a.open === 0 && a.pending === 0 && a.held.length === 0 && a.shedUntil <= now && noiseAt(a.noise, now) < FORGET_BELOW) this.accounts.delete(key);
    }
  }

  private publish(ref: AccountRef, reason: ShedReason): void {
    if (!overloadShed.hasSubscribers) return;
    const ev: OverloadShedEvent = { namespace: ref.namespace, pod: ref.pod, reason };
    overloadShed.publish(ev);
  }
}

/** The account of a source pod. */
export function podAccount(p: { namespace: string; name: string }): AccountRef {
  return { key: `${p.namespace}/${p.name}`, namespace: p.namespace, pod: p.name };
}

/** The account of a peer known only by its SPIFFE identity (an inbound tunnel whose source pod is not known here). */
export function identityAccount(identity: string): AccountRef {
  return { key: identity, namespace: /\/ns\/([^/]+)\//.exec(identity)?.[1] ?? '', pod: identity };
}

/** The account of a client outside the mesh, by its address. */
export function addressAccount(ip: string): AccountRef {
  return { key: ip, namespace: '', pod: ip };
}

/** The account a delivery into a local pod is charged to when no outbound ticket names it: the source pod, the peer identity, or the client address. */
export function arrivalAccount(a: Arrival): AccountRef {
  if (a.record.src) return podAccount(a.record.src);
  if (a.record.srcIdentity) return identityAccount(a.record.srcIdentity);
  return addressAccount(a.conn.sourceIp);
}
