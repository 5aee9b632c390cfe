/**
 * Typed hook errors. The runner only reports; the provider decides: a
 * failing `before*` hook vetoes, a failing `afterAdd` rolls back, a failing
 * `afterRemove` is reported.
 *
 * @module
 */
import type { HookEvent } from "./types.ts";

/** Details of a failed hook run. */
export interface HookFailure {
  /** The hook's name (file name). */
  hook: string;
  /** The event it ran at. */
  event: HookEvent;
  /** Its kind. */
  kind: "ts" | "exec";
  /** An executable's exit code (absent when killed by a signal). */
  exitCode?: number;
  /** The signal that ended an executable, e.g. `"SIGKILL"`. */
  signal?: string;
  /** An executable's standard output (capped). */
  stdout?: string;
  /** An executable's standard error (capped). */
  stderr?: string;
}

/** A hook failed: threw, rejected, exited non-zero or could not start. */
export class HookError extends Error implements HookFailure {
  /** The hook's name (file name). */
  readonly hook: string;
  /** The event it ran at. */
  readonly event: HookEvent;
  /** Its kind. */
  readonly kind: "ts" | "exec";
  /** An executable's exit code (absent when killed by a signal). */
  readonly exitCode?: number;
  /** The signal that ended an executable. */
  readonly signal?: string;
  /** An executable's standard output (capped). */
  readonly stdout?: string;
  /** An executable's standard error (capped). */
  readonly stderr?: string;

  /** A failure of `failure.hook`, `reason` saying how it failed. */
  constructor(failure: HookFailure, reason: string, options?: ErrorOptions) {
    super(
      `hook ${failure.hook} (${failure.kind}) failed at ${failure.event}: ${reason}`,
      options,
    );
    this.name = "HookError";
    this.hook = failure.hook;
    this.event = failure.event;
    this.kind = failure.kind;
    this.exitCode = failure.exitCode;
    this.signal = failure.signal;
    this.stdout = failure.stdout;
    this.stderr = failure.stderr;
  }
}

/**
 * A hook ran past its timeout: an executable was killed (its whole process
 * group, SIGKILL) and reaped; a TS hook was abandoned (its signal aborted).
 */
export class HookTimeoutError extends HookError {
  /** The timeout that expired. */
  readonly timeoutMs: number;

  /** `failure.hook` ran past `timeoutMs`. */
  constructor(failure: HookFailure, timeoutMs: number) {
    super(
      failure,
      `timed out after ${timeoutMs} ms; ${
        failure.kind === "exec" ? "killed" : "abandoned"
      }`,
    );
    this.name = "HookTimeoutError";
    this.timeoutMs = timeoutMs;
  }
}

/**
 * The hooks dir, or a file in it, is not safe to run: not owned by root,
 * group/world-writable, not executable, not a regular file. Thrown before
 * any hook runs (fail closed).
 */
export class HookSecurityError extends Error {
  /** The offending path. */
  readonly path: string;
  /** What is wrong with it. */
  readonly problem: string;

  /** Refuses `path` because of `problem`; `advice` says how to fix it. */
  constructor(path: string, problem: string, advice: string) {
    super(`${path} ${problem}; ${advice}`);
    this.name = "HookSecurityError";
    this.path = path;
    this.problem = problem;
  }
}

/** A hook is declared wrongly (bad events, bad timeout). Nothing ran. */
export class HookConfigError extends Error {
  /** The hook's name or path. */
  readonly hook: string;

  /** `hook` is declared wrongly, `reason` saying how. */
  constructor(hook: string, reason: string) {
    super(`hook ${hook}: ${reason}`);
    this.name = "HookConfigError";
    this.hook = hook;
  }
}
