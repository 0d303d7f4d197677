/**
 * Headless Chromium (Debian's `chromium`) driven over the DevTools protocol with Node's built-ins:
 * `--remote-debugging-pipe` speaks NUL-terminated JSON on fds 3 (commands in) and 4 (replies and
 * events out), so no websocket client is needed. Launched inside a lab node's netns, so the page it
 * loads from 127.0.0.1 is that node agent's admin port.
 *
 * Console errors, uncaught exceptions and browser log errors of the attached page are collected in
 * `problems` from the moment of attach.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import type { LabNode } from '../../agent/sandbox';
import { killGroup } from '../../agent/sandbox/run';

export const CHROMIUM = '/usr/bin/chromium';

/** Whether Debian's chromium package is installed (scripts/setup.sh installs it). */
export function chromiumInstalled(): boolean {
  return existsSync(CHROMIUM);
}

interface Pending { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void; method: string }
export interface CdpEvent { method: string; params: Record<string, unknown>; sessionId?: string }

export class Browser {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly waiters: { match: (e: CdpEvent) => boolean; resolve: (e: CdpEvent) => void }[] = [];
  private stderrTail = '';
  private exited = false;
  /** console errors, exceptions and log errors of attached pages, as text */
  readonly problems: string[] = [];
  /** console warnings, kept apart */
  readonly warnings: string[] = [];

  private constructor(private readonly child: ChildProcess, private readonly input: Writable, output: Readable) {
    let buf = '';
    output.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      for (let i = buf.indexOf('\0'); i >= 0; i = buf.indexOf('\0')) {
        const text = buf.slice(0, i);
        buf = buf.slice(i + 1);
        this.onMessage(JSON.parse(text) as { id?: number; result?: Record<string, unknown>; error?: { message: string }; method?: string; params?: Record<string, unknown>; sessionId?: string });
      }
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { this.stderrTail = (this.stderrTail + d).slice(-4000); });
    child.once('exit', (code, signal) => {
      this.exited = true;
      for (const p of this.pending.values()) p.reject(new Error(`chromium exited (${code ?? signal}) before answering ${p.method}; its stderr ends:\n${this.stderrTail}`));
      this.pending.clear();
    });
  }

  /** Starts chromium in `node`'s netns with a profile in `profileDir` (the caller removes it). */
  static async launch(node: LabNode, profileDir: string): Promise<Browser> {
    const child = node.spawn(CHROMIUM, [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--remote-debugging-pipe',
      `--user-data-dir=${profileDir}`, '--no-first-run', '--no-default-browser-check', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--window-size=1400,1000', 'about:blank',
    ], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
    const b = new Browser(child, child.stdio[3] as Writable, child.stdio[4] as Readable);
    await b.send('Browser.getVersion', {}, undefined, 30_000);
    return b;
  }

  private onMessage(m: { id?: number; result?: Record<string, unknown>; error?: { message: string }; method?: string; params?: Record<string, unknown>; sessionId?: string }): void {
    if (m.id !== undefined) {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.error) p.reject(new Error(`${p.method}: ${m.error.message}`));
      else p.resolve(m.result ?? {});
      return;
    }
    if (m.method === undefined) return;
    const ev: CdpEvent = { method: m.method, params: m.params ?? {}, ...(m.sessionId ? { sessionId: m.sessionId } : {}) };
    this.note(ev);
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      if (this.waiters[i]!.match(ev)) { this.waiters[i]!.resolve(ev); this.waiters.splice(i, 1); }
    }
  }

  private note(ev: CdpEvent): void {
    const p = ev.params as Record<string, any>;
    if (ev.method === 'Runtime.consoleAPICalled') {
      const text = `console.${p.type}: ${(p.args ?? []).map((a: { value?: unknown; description?: string }) => a.value ?? a.description).join(' ')}`;
      if (p.type === 'error' || p.type === 'assert') this.problems.push(text);
      else if (p.type === 'warning') this.warnings.push(text);
    } else if (ev.method === 'Runtime.exceptionThrown') {
      this.problems.push(`exception: ${p.exceptionDetails?.exception?.description ?? p.exceptionDetails?.text}`);
    } else if (ev.method === 'Log.entryAdded') {
      const e = p.entry;
      const text = `log ${e.level} (${e.source}): ${e.text}${e.url ? ` at ${e.url}` : ''}`;
      if (e.level === 'error') this.problems.push(text);
      else if (e.level === 'warning') this.warnings.push(text);
    }
  }

  /** One DevTools command; rejects after `timeoutMs`. */
  send(method: string, params: Record<string, unknown> = {}, sessionId?: string, timeoutMs = 10_000): Promise<Record<string, any>> {
    if (this.exited) return Promise.reject(new Error(`chromium is gone; cannot send ${method}; its stderr ends:\n${this.stderrTail}`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.pending.delete(id); reject(new Error(`${method}: no answer from chromium in ${timeoutMs} ms`)); }, timeoutMs);
      this.pending.set(id, { method, resolve: (v) => { clearTimeout(timer); resolve(v); }, reject: (e) => { clearTimeout(timer); reject(e); } });
      this.input.write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + '\0');
    });
  }

  /** The next event matching, within `timeoutMs`. */
  event(match: (e: CdpEvent) => boolean, timeoutMs: number, what: string): Promise<CdpEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} from chromium within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({ match, resolve: (e) => { clearTimeout(timer); resolve(e); } });
    });
  }

  /**
   * Opens `url` in a new page with console, exceptions and log collected from the start; resolves
   * with the page's session once its load event fired.
   */
  async open(url: string): Promise<Page> {
    const { targetId } = await this.send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await this.send('Target.attachToTarget', { targetId, flatten: true });
    for (const domain of ['Runtime', 'Log', 'Page']) await this.send(`${domain}.enable`, {}, sessionId);
    const loaded = this.event((e) => e.method === 'Page.loadEventFired' && e.sessionId === sessionId, 15_000, `load event for ${url}`);
    const nav = await this.send('Page.navigate', { url }, sessionId);
    if (nav.errorText) throw new Error(`chromium could not open ${url}: ${nav.errorText}`);
    await loaded;
    return new Page(this, sessionId as string);
  }

  /** Ends chromium (its process group). */
  close(): void {
    if (!this.exited) killGroup(this.child, 'SIGKILL');
  }
}

export class Page {
  constructor(private readonly browser: Browser, readonly sessionId: string) {}

  /** Evaluates `expression` in the page and returns its value (JSON-serialisable). */
  async evaluate<T>(expression: string): Promise<T> {
    const r = await this.browser.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true }, this.sessionId);
    if (r.exceptionDetails) throw new Error(`evaluating in the page failed: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    return r.result.value as T;
  }

  /** A PNG of the page as it is drawn. */
  async screenshot(): Promise<Buffer> {
    const r = await this.browser.send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true }, this.sessionId, 20_000);
    return Buffer.from(r.data as string, 'base64');
  }
}
