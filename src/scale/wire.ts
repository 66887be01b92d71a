/**
 * What crosses a process boundary (the embedded child's IPC, a BullMQ job's return value): errors
 * as plain objects that keep their `code` and words, so the door that receives one describes it
 * exactly as if it had been thrown in its own process (src/bot/replies.ts keys on `code`).
 */
import { CatdogError, ERRORS, type ErrorCode } from '../errors.ts';

export interface WireError {
  name: string;
  /** CatdogError's code; null for an unexpected error (a bug, a crash). */
  code: ErrorCode | string | null;
  message: string;
  stack?: string;
}

export function toWire(err: unknown): WireError {
  if (err instanceof CatdogError) return { name: err.name, code: err.code, message: err.message };
  if (err instanceof Error) return { name: err.name, code: null, message: err.message, stack: err.stack };
  return { name: 'Error', code: null, message: String(err) };
}

/** The error again: a CatdogError with the same code and message, or a plain Error. */
export function fromWire(w: WireError): Error {
  if (w.code !== null && Object.hasOwn(ERRORS, w.code)) {
    const err = new CatdogError(w.code as ErrorCode, w.message);
    err.name = w.name;
    return err;
  }
  const err = new Error(w.message);
  err.name = w.name;
  if (w.stack) err.stack = w.stack;
  return err;
}
