import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { formatConfigError, type ConfigError } from './config-error';
import type { Snapshot } from './objects';
import { parseConfig } from './parse';

export interface ConfigWatch {
  close(): void;
  /** The last snapshot that parsed: an invalid edit never replaces it. */
  current(): Snapshot;
}

/** Editors and ConfigMap updates write in bursts; one reload after the burst settles. */
const DEBOUNCE_MS = 50;

/**
 * Loads `path` now (throwing an Error that lists every problem if it is invalid), then follows
 * edits. The directory is watched as well as the file: editors save by writing a new file and
 * renaming it over the old one, and Kubernetes swaps a ConfigMap's `..data` symlink, neither of
 * which a watch on the old file sees. `onSnapshot` runs only when the content parses and differs
 * from the snapshot in force; `onError` gets the problems of an invalid edit, or an Error when the
 * file cannot be read, and the last good snapshot stays in force.
 */
export function watchConfig(
  path: string,
  onSnapshot: (s: Snapshot) => void,
  onError: (errors: ConfigError[] | Error) => void,
): ConfigWatch {
  const file = resolve(path);
  const text = readConfig(file);
  const first = parseConfig(text, file);
  if (!first.ok) {
    throw new Error(`invalid config ${file}:\n  ${first.error.map(formatConfigError).join('\n  ')}`);
  }
  let current = first.value;
  let currentJson = JSON.stringify(current);
  /** The content last looked at, good or bad; undefined while the file cannot be read. */
  let lastText: string | undefined = text;
  let timer: NodeJS.Timeout | undefined;
  let fileWatcher: FSWatcher | undefined;
  let closed = false;

  const schedule = (): void => {
    if (closed) return;
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(reload, DEBOUNCE_MS);
  };
  const watchFailed = (e: Error): void => onError(new Error(`watching ${file} failed: ${e.message}`));

  /** A rename-replace leaves the old watch on a deleted inode: watch whatever the path is now. */
  const watchFile = (): void => {
    fileWatcher?.close();
    try {
      fileWatcher = watch(file, schedule).on('error', watchFailed);
    } catch {
      fileWatcher = undefined; // missing for now: the directory watch sees it come back
    }
  };

  const reload = (): void => {
    timer = undefined;
    if (closed) return;
    let next: string;
    try {
      next = readConfig(file);
    } catch (e) {
      if (lastText !== undefined) onError(new Error(`${(e as Error).message}; keeping the last good config`));
      lastText = undefined;
      return;
    }
    watchFile();
    if (next === lastText) return;
    lastText = next;
    const parsed = parseConfig(next, file);
    if (!parsed.ok) {
      onError(parsed.error);
      return;
    }
    const json = JSON.stringify(parsed.value);
    if (json === currentJson) return;
    current = parsed.value;
    currentJson = json;
    onSnapshot(current);
  };

  const dirWatcher = watch(dirname(file), schedule).on('error', watchFailed);
  watchFile();

  return {
    close() {
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
      dirWatcher.close();
      fileWatcher?.close();
    },
    current: () => current,
  };
}

function readConfig(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read config ${file}: ${(e as Error).message}`);
  }
}
