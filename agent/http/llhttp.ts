/**
 * Node's own llhttp binding (the parser its http module drives), used directly: no IncomingMessage,
 * ServerResponse or ClientRequest per request. Strict mode only (kLenientNone): every message
 * boundary is llhttp's. Callback shapes are Node 20's (lib/_http_common.js); `execute` returns the
 * bytes parsed or an Error with `code` (HPE_*) and `bytesParsed`.
 */

export interface ParseError extends Error { code?: string; bytesParsed?: number; reason?: string }

export interface LlhttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | ParseError;
  finish(): undefined | ParseError;
  close(): void;
  [callback: number]: unknown;
}

interface Binding {
  HTTPParser: {
    new (): LlhttpParser;
    REQUEST: number;
    RESPONSE: number;
    kOnMessageBegin: number;
    kOnHeaders: number;
    kOnHeadersComplete: number;
    kOnBody: number;
    kOnMessageComplete: number;
    kLenientNone: number;
  };
  methods: string[];
}

// eslint-disable-next-line @typescript-eslint/no-var-requires
const binding = require('_http_common') as Binding;
const P = binding.HTTPParser;

/** Method names by llhttp's index. */
export const METHODS: readonly string[] = binding.methods;

/** What one parser tells its owner; `headersComplete` returns 1 to say the message has no body (a response to HEAD). */
export interface ParserEvents {
  messageBegin(): void;
  /** Header fields flushed before the head completed, or trailers after the body. */
  headers(raw: string[], url: string): void;
  headersComplete(major: number, minor: number, raw: string[] | undefined, method: number | undefined, url: string | undefined,
    status: number | undefined, statusMessage: string | undefined, upgrade: boolean, keepAlive: boolean): number;
  body(chunk: Buffer): void;
  messageComplete(): void;
}

/** A strict llhttp parser for requests or responses, its callbacks bound to `events`. */
export function llhttpParser(kind: 'request' | 'response', maxHeaderBytes: number, events: ParserEvents): LlhttpParser {
  const p = new P();
  p.initialize(kind === 'request' ? P.REQUEST : P.RESPONSE, {}, maxHeaderBytes, P.kLenientNone);
  p[P.kOnMessageBegin] = () => events.messageBegin();
  p[P.kOnHeaders] = (raw: string[], url: string) => events.headers(raw, url);
  p[P.kOnHeadersComplete] = (major: number, minor: number, raw: string[] | undefined, method: number | undefined, url: string | undefined,
    status: number | undefined, statusMessage: string | undefined, upgrade: boolean, keepAlive: boolean) =>
    events.headersComplete(major, minor, raw, method, url, status, statusMessage, upgrade, keepAlive);
  p[P.kOnBody] = (b: Buffer) => events.body(b);
  p[P.kOnMessageComplete] = () => events.messageComplete();
  return p;
}
