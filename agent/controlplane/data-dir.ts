import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/** The control plane's data directory: created private, files replaced atomically. */

/** What an operator can do about a file-system error under the data directory. */
export function fsAdvice(error: unknown): string {
  switch ((error as NodeJS.ErrnoException).code) {
    case 'ENOSPC': return 'no space left on the device: free space on that file system (or give --data-dir a larger one) and start again';
    case 'EDQUOT': return 'the disk quota is exhausted: raise it or free space and start again';
    case 'EROFS': return 'the file system is read-only: mount it writable or point --data-dir at a writable directory';
    case 'EACCES':
    case 'EPERM': return `permission denied for uid ${process.getuid?.() ?? '?'}: make it writable by this user or point --data-dir elsewhere`;
    case 'ENOTDIR':
    case 'EEXIST': return 'a file is in the way: it is not a directory; move the file or point --data-dir elsewhere';
    default: return (error as Error).message;
  }
}

export function ensureDataDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new Error(`data directory ${dir}: cannot create it: ${fsAdvice(error)} (${(error as Error).message})`, { cause: error });
  }
  if (!statSync(dir).isDirectory()) throw new Error(`data directory ${dir}: not a directory: move the file or point --data-dir elsewhere`);
}

export function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * Writes to a temporary file with `mode` from the start, then renames: readers never see half a key.
 * On failure the temporary file is removed (a full disk leaves nothing behind) and the error names
 * `path` and what to do; its `code` stays the system's (ENOSPC, EROFS, EACCES, ...).
 */
export function writeFileAtomic(path: string, data: string, mode: number): void {
  ensureDataDir(dirname(path));
  const temporary = `${path}.${process.pid}.tmp`;
  try {
    const fd = openSync(temporary, 'w', mode);
    try {
      writeSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(temporary, mode); // the umask may have narrowed or the file pre-existed with other bits
    renameSync(temporary, path);
  } catch (error) {
    try { unlinkSync(temporary); } catch { /* never created, or already renamed */ }
    throw Object.assign(new Error(`cannot write ${path}: ${fsAdvice(error)} (${(error as Error).message})`, { cause: error }), { code: (error as NodeJS.ErrnoException).code });
  }
}
