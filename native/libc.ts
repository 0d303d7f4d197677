/**
 * The FFI boundary to libc (koffi), for what Node cannot do itself: sockets with
 * IP_TRANSPARENT / IPV6_TRANSPARENT set before bind, and the socket facts same-node splicing reads
 * (SO_COOKIE, TCP_INFO, SIOCOUTQ), malloc_trim to give freed native memory back, and
 * pthread_sigmask to hold signals off a system call that a signal would abort. Thin wrappers over socket, setsockopt, getsockopt, ioctl, bind,
 * listen and close; each turns -1 + errno into a thrown LibcError that names the call, its subject
 * and the errno (its name and libc's text), so the caller can say what to check.
 */
import koffi from 'koffi';
import { constants as osConstants } from 'node:os';

const lib = koffi.load('libc.so.6');

const f = {
  socket: lib.func('int socket(int domain, int type, int protocol)'),
  setsockopt: lib.func('int setsockopt(int fd, int level, int optname, const void *optval, uint32_t optlen)'),
  bind: lib.func('int bind(int fd, const void *addr, uint32_t addrlen)'),
  listen: lib.func('int listen(int fd, int backlog)'),
  close: lib.func('int close(int fd)'),
  getsockopt: lib.func('int getsockopt(int fd, int level, int optname, _Out_ void *optval, _Inout_ uint32_t *optlen)'),
  ioctlInt: lib.func('int ioctl(int fd, unsigned long request, _Out_ int *value)'),
  recv: lib.func('long recv(int fd, _Out_ void *buf, unsigned long len, int flags)'),
  strerror: lib.func('const char *strerror(int errnum)'),
  mallocTrim: lib.func('int malloc_trim(unsigned long pad)'),
  sigfillset: lib.func('int sigfillset(void *set)'),
  sigdelset: lib.func('int sigdelset(void *set, int signum)'),
  pthreadSigmask: lib.func('int pthread_sigmask(int how, const void *set, void *oldset)'),
};

export const AF_INET = 2;
export const AF_INET6 = 10;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;

export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_REUSEPORT = 15;
/** attaches a BPF_PROG_TYPE_SK_REUSEPORT program (by fd) to the socket's reuseport group */
export const SO_ATTACH_REUSEPORT_EBPF = 52;
export const SOL_IP = 0;
export const IP_TRANSPARENT = 19;
export const SOL_IPV6 = 41;
export const IPV6_V6ONLY = 26;
export const IPV6_TRANSPARENT = 75;
export const SO_RCVLOWAT = 18;
export const SO_COOKIE = 57;
export const IPPROTO_TCP = 6;
export const TCP_INFO = 11;
/** ioctl: bytes in a TCP socket's send queue not yet acknowledged by the peer (write_seq - snd_una) */
export const SIOCOUTQ = 0x5411;

const errnoNames = new Map<number, string>(Object.entries(osConstants.errno).map(([k, v]) => [v as number, k]));

export class LibcError extends Error {
  /** the errno's name (EPERM, EADDRINUSE, ...), as Node names socket errors */
  readonly code: string;
  constructor(readonly call: string, readonly subject: string, readonly errno: number) {
    const name = errnoNames.get(errno) ?? `errno ${errno}`;
    super(`${call}(${subject}) failed: ${name} (${f.strerror(errno) as string})`);
    this.code = name;
  }
}

function check(rc: number, call: string, subject: string): number {
  if (rc < 0) throw new LibcError(call, subject, koffi.errno());
  return rc;
}

/** A non-blocking, close-on-exec TCP socket of the given family. */
export function tcpSocket(family: 4 | 6): number {
  return check(f.socket(family === 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), 'socket', `IPv${family} TCP`);
}

export function setsockoptInt(fd: number, level: number, name: number, value: number, subject: string): void {
  const v = Buffer.alloc(4);
  v.writeInt32LE(value);
  check(f.setsockopt(fd, level, name, v, 4), 'setsockopt', subject);
}

/**
 * bind() to `addr` (4 or 16 network-order bytes) and `port`: builds struct sockaddr_in or
 * sockaddr_in6 (family in host order, port in network order). `subject` names the address in errors.
 */
export function bind(fd: number, addr: Buffer, port: number, subject: string): void {
  let sa: Buffer;
  if (addr.length === 4) {
    sa = Buffer.alloc(16);
    sa.writeUInt16LE(AF_INET, 0);
    addr.copy(sa, 4);
  } else if (addr.length === 16) {
    sa = Buffer.alloc(28);
    sa.writeUInt16LE(AF_INET6, 0);
    addr.copy(sa, 8);
  } else {
    throw new Error(`bind(${subject}): an address is 4 or 16 bytes, not ${addr.length}`);
  }
  sa.writeUInt16BE(port, 2);
  check(f.bind(fd, sa, sa.length), 'bind', subject);
}

export function listen(fd: number, backlog: number, subject: string): void {
  check(f.listen(fd, backlog), 'listen', subject);
}

/** Closes an fd that was never handed to Node (after a failed setup step). */
export function close(fd: number): void {
  f.close(fd);
}

/** getsockopt() into a buffer of `size` bytes; returns the bytes the kernel filled. */
export function getsockopt(fd: number, level: number, name: number, size: number, subject: string): Buffer {
  const value = Buffer.alloc(size);
  const len = [size];
  check(f.getsockopt(fd, level, name, value, len), 'getsockopt', subject);
  return value.subarray(0, len[0]);
}

/** A socket's cookie (SO_COOKIE): the kernel's unique, never reused id of the socket. */
export function socketCookie(fd: number, subject: string): bigint {
  return getsockopt(fd, SOL_SOCKET, SO_COOKIE, 8, subject).readBigUInt64LE(0);
}

/** An ioctl that answers one int (SIOCOUTQ, SIOCINQ). */
export function ioctlInt(fd: number, request: number, subject: string): number {
  const out = [0];
  check(f.ioctlInt(fd, request, out), 'ioctl', subject);
  return out[0]!;
}

const MSG_DONTWAIT = 0x40;
const EAGAIN = 11;

/**
 * recv() without waiting into `buf`: the bytes read, 0 at EOF, -1 when nothing is there now
 * (EAGAIN). Other errors are thrown.
 */
export function recvNow(fd: number, buf: Buffer, subject: string): number {
  const n = Number(f.recv(fd, buf, buf.length, MSG_DONTWAIT));
  if (n >= 0) return n;
  const errno = koffi.errno();
  if (errno === EAGAIN) return -1;
  throw new LibcError('recv', subject, errno);
}

/**
 * Gives the memory malloc holds free back to the kernel (glibc's malloc_trim(0): the top of every
 * arena, and whole free pages inside them). Node's native side (OpenSSL, nghttp2, libuv) frees
 * into malloc, which keeps it: after a burst of HTTP/2 traffic 6 MiB came back in 0.4 ms. True when
 * something was given back.
 */
export function mallocTrim(): boolean {
  return f.mallocTrim(0) === 1;
}

const SIG_BLOCK = 0;
const SIG_SETMASK = 2;
/** glibc's sigset_t */
const SIGSET_BYTES = 128;
/** Raised by a fault of the thread itself (SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV): never held. */
const FAULT_SIGNALS = [4, 5, 7, 8, 11];

/**
 * Runs `fn` with every signal but the fault signals held off the calling thread; what arrives
 * meanwhile is delivered when it returns. For a system call that gives up when a signal is pending:
 * the kernel's BPF verifier returns EAGAIN if a signal arrives while it runs, and libbpf retries
 * only five times, so a CPU profiler's SIGPROF every millisecond (node --cpu-prof) kept the agent
 * from loading its programs at all (docs/datapath.md).
 */
export function withSignalsHeld<T>(fn: () => T): T {
  const set = Buffer.alloc(SIGSET_BYTES);
  const old = Buffer.alloc(SIGSET_BYTES);
  f.sigfillset(set);
  for (const s of FAULT_SIGNALS) f.sigdelset(set, s);
  const rc = f.pthreadSigmask(SIG_BLOCK, set, old) as number;
  if (rc !== 0) throw new LibcError('pthread_sigmask', 'SIG_BLOCK', rc);
  try {
    return fn();
  } finally {
    f.pthreadSigmask(SIG_SETMASK, old, null);
  }
}
