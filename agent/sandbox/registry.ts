// Which labs exist on this machine and who owns them, so a crashed run's leftovers can be told
// from a live lab of another process; plus the process-wide exit hooks that close open labs.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cgroup2Root, destroyCgroupTree } from './cgroup';
import { deleteNetnsSync, listNetns } from './netns';

const RECORD_DIR = '/run/weft-lab';
/** Every netns of the family starts with this; lab n's with `wl-<n>-`. */
export const NETNS_FAMILY = 'wl-';
const CGROUP_FAMILY = 'weft-lab-';
export const MAX_LABS = 254;
const BPF_ROOT = '/sys/fs/bpf/weft';

export interface LabRecord {
  index: number;
  name: string;
  pid: number;
  /** start time of the owner (/proc/<pid>/stat field 22), so a reused pid is not taken for the owner */
  start: string;
  nodes: string[];
}

export const labNetnsPrefix = (index: number): string => `${NETNS_FAMILY}${index}-`;
export const labCgroupDir = (index: number): string => path.join(cgroup2Root(), `${CGROUP_FAMILY}${index}`);

function startTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

const recordPath = (index: number): string => path.join(RECORD_DIR, `${index}.json`);

function readRecords(): LabRecord[] {
  if (!fs.existsSync(RECORD_DIR)) return [];
  return fs
    .readdirSync(RECORD_DIR)
    .filter((f) => /^\d+\.json$/.test(f))
    .flatMap((f) => {
      try {
        return [JSON.parse(fs.readFileSync(path.join(RECORD_DIR, f), 'utf8')) as LabRecord];
      } catch {
        return []; // being written right now, or torn by a crash: the netns/cgroup sweep covers it
      }
    });
}

const alive = (r: LabRecord): boolean => startTime(r.pid) === r.start;

/** Claims a free lab index for `name` (atomically: the record file is created exclusively). */
export function claimRecord(name: string): LabRecord {
  fs.mkdirSync(RECORD_DIR, { recursive: true });
  const owner = readRecords().find((r) => r.name === name && alive(r));
  if (owner) throw new Error(`lab name '${name}' is in use by pid ${owner.pid} (lab ${owner.index}); pick another name`);
  for (let index = 1; index <= MAX_LABS; index++) {
    const record: LabRecord = { index, name, pid: process.pid, start: startTime(process.pid) ?? '', nodes: [] };
    try {
      fs.writeFileSync(recordPath(index), JSON.stringify(record), { flag: 'wx' });
      return record;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  throw new Error(`all ${MAX_LABS} lab indexes are taken (see ${RECORD_DIR})`);
}

export function saveRecord(record: LabRecord): void {
  fs.writeFileSync(recordPath(record.index), JSON.stringify(record));
}

/** Removes everything lab `record.index` made: cgroups (killing what runs there), netns, pinned bpf dirs, the record. */
export function teardownSync(record: LabRecord): string[] {
  const errors = destroyCgroupTree(labCgroupDir(record.index), { kill: true });
  for (const ns of listNetns().filter((n) => n.startsWith(labNetnsPrefix(record.index)))) {
    const err = deleteNetnsSync(ns);
    if (err) errors.push(err);
  }
  for (const node of record.nodes) {
    try {
      fs.rmSync(path.join(BPF_ROOT, node), { recursive: true, force: true });
    } catch (err) {
      errors.push(`rm -r ${path.join(BPF_ROOT, node)}: ${(err as Error).message}`);
    }
  }
  fs.rmSync(recordPath(record.index), { force: true });
  return errors;
}

/**
 * Removes leftovers of crashed runs: labs whose owner process is gone, netns of the family
 * without a live lab, and empty weft-lab-* cgroups without a live lab. Lists netns and cgroups
 * before reading the records, so a lab being created meanwhile (record first) is never swept.
 */
export function sweepStale(): string[] {
  const netns = listNetns().filter((n) => n.startsWith(NETNS_FAMILY));
  const cgroups = fs.readdirSync(cgroup2Root()).filter((d) => d.startsWith(CGROUP_FAMILY));
  const records = readRecords();
  const live = new Set(records.filter(alive).map((r) => r.index));
  const errors = records.filter((r) => !live.has(r.index)).flatMap(teardownSync);
  const indexOf = (rest: string): number => Number(rest.split('-')[0]);
  for (const ns of netns.filter((n) => !live.has(indexOf(n.slice(NETNS_FAMILY.length))))) {
    if (!fs.existsSync(path.join('/run/netns', ns))) continue;
    const err = deleteNetnsSync(ns);
    if (err) errors.push(err);
  }
  for (const cg of cgroups.filter((c) => !live.has(indexOf(c.slice(CGROUP_FAMILY.length))))) {
    errors.push(...destroyCgroupTree(path.join(cgroup2Root(), cg), { kill: false }));
  }
  return errors;
}

interface Closable {
  closeSync(): string[];
}

const open = new Set<Closable>();
let hooked = false;

function closeAllSync(why: string): void {
  for (const lab of [...open]) {
    const errors = lab.closeSync();
    if (errors.length) process.stderr.write(`weft lab cleanup on ${why}:\n  ${errors.join('\n  ')}\n`);
  }
}

function onSignal(signal: NodeJS.Signals): void {
  closeAllSync(signal);
  process.removeListener(signal, onSignal);
  // Nobody else handles it: die of the signal as if we had never listened.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

/**
 * Tracks an open lab; the first call installs the process-wide hooks. An uncaught exception is
 * seen through the monitor (not a handler, which would keep a crashing process alive) and
 * cleans up only when nothing else handles it, i.e. when the process is about to die.
 */
export function registerOpen(lab: Closable): void {
  open.add(lab);
  if (hooked) return;
  hooked = true;
  process.on('exit', () => closeAllSync('exit'));
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, onSignal);
  process.on('uncaughtExceptionMonitor', (_err, origin) => {
    if (process.listenerCount('uncaughtException') === 0) closeAllSync(origin);
  });
}

export function unregisterOpen(lab: Closable): void {
  open.delete(lab);
}
