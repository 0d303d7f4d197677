/**
 * A fuzz target: one parser (or one server path) that reads bytes somebody else chose. Every
 * input is bytes, so any input can be printed, kept in the corpus and replayed; a target that
 * wants structure (an HTTP request, a YAML object, a DER tree) renders it to bytes in `generators`.
 */
import type * as fc from 'fast-check';

export interface FuzzTarget {
  /** kebab-case; also the corpus directory test/fuzz/corpus/<name>/ */
  name: string;
  /** what is fuzzed (file and function) and what is checked besides "does not throw" */
  what: string;
  /** structure-aware generators of inputs, mixed with corpus mutation and random bytes */
  generators?: fc.Arbitrary<Buffer>[];
  /** largest random input (bytes); default 1024 */
  maxBytes?: number;
  /** one-time preparation (servers, keys); the corpus seeds it may want are passed in */
  setup?(): Promise<void>;
  /**
   * Feeds one input. Throws (or rejects) when the code under test crashed or broke an invariant;
   * a parser refusing bad input with its documented error is not a failure.
   */
  run(input: Buffer): void | Promise<void>;
  teardown?(): Promise<void>;
}

/** An invariant the target checks; the message says what was expected of which function. */
export function check(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`invariant: ${message}`);
}

/** Runs `f`; a throw is a crash of `fn` (the parser must return its Result instead). */
export function mustNotThrow<T>(fn: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    const error = e instanceof Error ? e : new Error(String(e));
    error.message = `${fn} threw instead of returning an error: ${error.message}`;
    throw error;
  }
}

/** `p`, or a rejection naming `what` after `ms`: an async path that never settles is a hang. */
export function settlesWithin<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`hang: ${what} did not settle within ${ms} ms`)), ms); });
  return Promise.race([p, bound]).finally(() => clearTimeout(timer));
}
