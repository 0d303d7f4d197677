/**
 * The FFI boundary to libbpf (koffi). Nothing but thin, typed wrappers over libbpf calls lives
 * here: every wrapper turns libbpf's negative-errno / NULL+errno convention into a thrown
 * BpfError that names the call, its subject and the errno, so the caller can say what to check.
 */
import koffi from 'koffi';
import { constants as osConstants } from 'node:os';
import { withSignalsHeld } from './libc';

const lib = koffi.load('libbpf.so.1');

const BpfObject = koffi.opaque('bpf_object');
const BpfProgram = koffi.opaque('bpf_program');
const BpfMapT = koffi.opaque('bpf_map');
const BpfLinkT = koffi.opaque('bpf_link');
const ObjPtr = koffi.pointer(BpfObject);
const ProgPtr = koffi.pointer(BpfProgram);
const MapPtr = koffi.pointer(BpfMapT);
const LinkPtr = koffi.pointer(BpfLinkT);

const f = {
  objectOpenFile: lib.func('bpf_object__open_file', ObjPtr, ['str', 'void *']),
  objectLoad: lib.func('bpf_object__load', 'int', [ObjPtr]),
  objectClose: lib.func('bpf_object__close', 'void', [ObjPtr]),
  objectNextMap: lib.func('bpf_object__next_map', MapPtr, [ObjPtr, MapPtr]),
  objectNextProgram: lib.func('bpf_object__next_program', ProgPtr, [ObjPtr, ProgPtr]),
  mapName: lib.func('bpf_map__name', 'str', [MapPtr]),
  mapSetPinPath: lib.func('bpf_map__set_pin_path', 'int', [MapPtr, 'str']),
  mapFd: lib.func('bpf_map__fd', 'int', [MapPtr]),
  programName: lib.func('bpf_program__name', 'str', [ProgPtr]),
  programFd: lib.func('bpf_program__fd', 'int', [ProgPtr]),
  programAttachCgroup: lib.func('bpf_program__attach_cgroup', LinkPtr, [ProgPtr, 'int']),
  linkPin: lib.func('bpf_link__pin', 'int', [LinkPtr, 'str']),
  linkDestroy: lib.func('bpf_link__destroy', 'int', [LinkPtr]),
  linkCreate: lib.func('bpf_link_create', 'int', ['int', 'int', 'int', 'void *']),
  linkUpdate: lib.func('bpf_link_update', 'int', ['int', 'int', 'void *']),
  linkDetach: lib.func('bpf_link_detach', 'int', ['int']),
  objGet: lib.func('bpf_obj_get', 'int', ['str']),
  linkGetFdById: lib.func('bpf_link_get_fd_by_id', 'int', ['uint32_t']),
  objPin: lib.func('bpf_obj_pin', 'int', ['int', 'str']),
  objGetInfoByFd: lib.func('bpf_obj_get_info_by_fd', 'int', ['int', 'void *', '_Inout_ uint32_t *']),
  mapUpdateElem: lib.func('bpf_map_update_elem', 'int', ['int', 'void *', 'void *', 'uint64_t']),
  mapLookupElem: lib.func('bpf_map_lookup_elem', 'int', ['int', 'void *', 'void *']),
  mapDeleteElem: lib.func('bpf_map_delete_elem', 'int', ['int', 'void *']),
  mapLookupAndDeleteElem: lib.func('bpf_map_lookup_and_delete_elem', 'int', ['int', 'void *', 'void *']),
  mapGetNextKey: lib.func('bpf_map_get_next_key', 'int', ['int', 'void *', 'void *']),
  progTestRunOpts: lib.func('bpf_prog_test_run_opts', 'int', ['int', 'void *']),
  progAttach: lib.func('bpf_prog_attach', 'int', ['int', 'int', 'int', 'uint32_t']),
};

const errnoNames = new Map<number, string>(Object.entries(osConstants.errno).map(([k, v]) => [v as number, k]));

export class BpfError extends Error {
  readonly code: string;
  constructor(readonly call: string, readonly subject: string, readonly errno: number) {
    const name = errnoNames.get(errno) ?? `errno ${errno}`;
    super(`${call}(${subject}) failed: ${name}`);
    this.code = name;
  }
}

function check(rc: number, call: string, subject: string): number {
  if (rc < 0) throw new BpfError(call, subject, -rc);
  return rc;
}

function nonNull<T>(p: T | null, call: string, subject: string): T {
  if (p === null) throw new BpfError(call, subject, koffi.errno() || 22);
  return p;
}

export type ObjectHandle = { readonly path: string; readonly ptr: unknown };

/** Opens a BPF ELF object; maps with pinning get `pinRoot/<map name>` (or no pin when pinRoot is null). */
export function openObject(path: string, pinRoot: string | null): ObjectHandle {
  const ptr = nonNull(f.objectOpenFile(path, null), 'bpf_object__open_file', path);
  for (let m = f.objectNextMap(ptr, null); m !== null; m = f.objectNextMap(ptr, m)) {
    const name = f.mapName(m) as string;
    if (name.includes('.')) continue; // <obj>.rodata and friends are internal, never shared
    check(f.mapSetPinPath(m, pinRoot === null ? null : `${pinRoot}/${name}`), 'bpf_map__set_pin_path', name);
  }
  return { path, ptr };
}

/** Loads (verifies) the object's programs, with signals held off: a signal makes the verifier give up (libc.ts withSignalsHeld). */
export function loadObject(obj: ObjectHandle): void {
  check(withSignalsHeld(() => f.objectLoad(obj.ptr) as number), 'bpf_object__load', obj.path);
}

/** Closes the object: unpinned programs and maps without other references go away. */
export function closeObject(obj: ObjectHandle): void {
  f.objectClose(obj.ptr);
}

export function programFds(obj: ObjectHandle): Map<string, number> {
  const out = new Map<string, number>();
  for (let p = f.objectNextProgram(obj.ptr, null); p !== null; p = f.objectNextProgram(obj.ptr, p)) {
    out.set(f.programName(p) as string, check(f.programFd(p), 'bpf_program__fd', f.programName(p) as string));
  }
  return out;
}

export function mapFds(obj: ObjectHandle): Map<string, number> {
  const out = new Map<string, number>();
  for (let m = f.objectNextMap(obj.ptr, null); m !== null; m = f.objectNextMap(obj.ptr, m)) {
    const name = f.mapName(m) as string;
    if (!name.includes('.')) out.set(name, check(f.mapFd(m), 'bpf_map__fd', name));
  }
  return out;
}

/** Attaches a program of `obj` to a cgroup as a bpf_link and pins the link at `pinPath`. */
export function attachCgroupPinned(obj: ObjectHandle, program: string, cgroupFd: number, pinPath: string): void {
  let prog: unknown = null;
  for (let p = f.objectNextProgram(obj.ptr, null); p !== null; p = f.objectNextProgram(obj.ptr, p)) {
    if (f.programName(p) === program) prog = p;
  }
  if (prog === null) throw new BpfError('bpf_object__find_program', program, 2);
  const link = nonNull(f.programAttachCgroup(prog, cgroupFd), 'bpf_program__attach_cgroup', program);
  try {
    check(f.linkPin(link, pinPath), 'bpf_link__pin', pinPath);
  } finally {
    f.linkDestroy(link); // drops our reference; the pin keeps the attachment (or, if pinning failed, it detaches)
  }
}

/** bpf_link_create for attach types that take a plain target (tcx: the interface index). Returns the link fd. */
export function linkCreate(progFd: number, target: number, attachType: number, subject: string): number {
  return check(f.linkCreate(progFd, target, attachType, null), 'bpf_link_create', subject);
}

export function linkUpdate(linkFd: number, progFd: number, subject: string): void {
  check(f.linkUpdate(linkFd, progFd, null), 'bpf_link_update', subject);
}

/**
 * BPF_LINK_DETACH: takes the link off its hook now, whatever still references it. Dropping the
 * last reference (unpinning) detaches it too, but later: the kernel defers that put to a work
 * queue, and re-attaching the same program to the same hook meanwhile fails with EEXIST.
 */
export function linkDetach(linkFd: number, subject: string): void {
  check(f.linkDetach(linkFd), 'bpf_link_detach', subject);
}

/** BPF_SK_SKB_STREAM_VERDICT: a sockmap/sockhash program run for each skb its sockets receive. */
export const BPF_SK_SKB_STREAM_VERDICT = 5;

/** bpf_prog_attach: attaches a program to a target fd (for sk_skb programs, a sockmap or sockhash). */
export function progAttach(progFd: number, targetFd: number, attachType: number, subject: string): void {
  check(f.progAttach(progFd, targetFd, attachType, 0), 'bpf_prog_attach', subject);
}

export function objGet(path: string): number {
  return check(f.objGet(path), 'bpf_obj_get', path);
}

export function linkFdById(id: number): number {
  return check(f.linkGetFdById(id), 'bpf_link_get_fd_by_id', String(id));
}

export function objPin(fd: number, path: string): void {
  check(f.objPin(fd, path), 'bpf_obj_pin', path);
}

/** Raw bpf_*_info for an fd (program, map or link), as the kernel filled it. */
export function objInfo(fd: number, subject: string, size = 256): Buffer {
  const buf = Buffer.alloc(size);
  const len = [size];
  check(f.objGetInfoByFd(fd, buf, len), 'bpf_obj_get_info_by_fd', subject);
  return buf;
}

export const BPF_ANY = 0;

export function mapUpdate(fd: number, key: Buffer, value: Buffer, flags = BPF_ANY): void {
  check(f.mapUpdateElem(fd, key, value, flags), 'bpf_map_update_elem', `fd ${fd}`);
}

/** Looks a key up; null when absent. */
export function mapLookup(fd: number, key: Buffer, valueSize: number): Buffer | null {
  const value = Buffer.alloc(valueSize);
  const rc = f.mapLookupElem(fd, key, value);
  if (rc === -2) return null; // ENOENT
  check(rc, 'bpf_map_lookup_elem', `fd ${fd}`);
  return value;
}

/** Deletes a key; false when it was absent. */
export function mapDelete(fd: number, key: Buffer): boolean {
  const rc = f.mapDeleteElem(fd, key);
  if (rc === -2) return false;
  check(rc, 'bpf_map_delete_elem', `fd ${fd}`);
  return true;
}

/** Looks a key up and deletes it in one call (hash maps); null when absent. */
export function mapLookupAndDelete(fd: number, key: Buffer, valueSize: number): Buffer | null {
  const value = Buffer.alloc(valueSize);
  const rc = f.mapLookupAndDeleteElem(fd, key, value);
  if (rc === -2) return null; // ENOENT
  check(rc, 'bpf_map_lookup_and_delete_elem', `fd ${fd}`);
  return value;
}

export function mapKeys(fd: number, keySize: number): Buffer[] {
  const keys: Buffer[] = [];
  let prev: Buffer | null = null;
  for (;;) {
    const next = Buffer.alloc(keySize);
    const rc = f.mapGetNextKey(fd, prev, next);
    if (rc === -2) return keys;
    check(rc, 'bpf_map_get_next_key', `fd ${fd}`);
    keys.push(next);
    prev = next;
  }
}

export interface TestRunResult { retval: number; dataOut: Buffer; durationNs: number }

/** BPF_PROG_TEST_RUN for program types that support it (e.g. tc): runs `data` through the program. */
export function progTestRun(progFd: number, data: Buffer, repeat = 1): TestRunResult {
  const outCap = data.length + 256;
  const dataIn = koffi.alloc('uint8_t', data.length);
  const dataOut = koffi.alloc('uint8_t', outCap);
  try {
    koffi.encode(dataIn, koffi.array('uint8_t', data.length, 'Typed'), new Uint8Array(data));
    // struct bpf_test_run_opts (libbpf 1.1): sz, data_in, data_out, data_size_in, data_size_out,
    // ctx_in, ctx_out, ctx_size_in, ctx_size_out, retval, repeat, duration, flags, cpu, batch_size
    const opts = Buffer.alloc(80);
    opts.writeBigUInt64LE(80n, 0);
    opts.writeBigUInt64LE(koffi.address(dataIn) as bigint, 8);
    opts.writeBigUInt64LE(koffi.address(dataOut) as bigint, 16);
    opts.writeUInt32LE(data.length, 24);
    opts.writeUInt32LE(outCap, 28);
    opts.writeInt32LE(repeat, 60);
    check(f.progTestRunOpts(progFd, opts), 'bpf_prog_test_run_opts', `fd ${progFd}`);
    const outLen = opts.readUInt32LE(28);
    const out = Buffer.from(koffi.decode(dataOut, koffi.array('uint8_t', outLen, 'Typed')) as Uint8Array);
    return { retval: opts.readUInt32LE(56), dataOut: out, durationNs: opts.readUInt32LE(64) };
  } finally {
    koffi.free(dataIn);
    koffi.free(dataOut);
  }
}
