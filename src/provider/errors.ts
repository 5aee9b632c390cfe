/**
 * The provider's error classes. Each carries the operation, the object (a
 * VM, `vm/index` for a NIC, a path) and the reason; the message is built
 * once from the three (`add vm1: …`), so no layer prefixes it again. The
 * CLI maps the classes to its exit codes (docs/cli.md): 2 bad input or
 * conflict, 3 not found, 1 the rest.
 *
 * @module
 */
import { InvalidArgumentError } from "../wiring/errors.ts";
import { LockInterruptedError, LockTimeoutError } from "../store/errors.ts";

/** Base class of the errors the provider throws on purpose. */
export class VmnicError extends Error {
  /** The operation (`add`, `remove`, …). */
  readonly op: string;
  /** The VM or NIC concerned (`vm1`, `vm1/0`), or a path. */
  readonly object: string;
  /** What went wrong, without the operation and object. */
  readonly reason: string;
  /** The CLI's exit code for it (docs/cli.md): 1 unless a subclass says. */
  readonly exitCode: number = 1;

  /** `op` on `object` failed for `reason`. */
  constructor(
    op: string,
    object: string,
    reason: string,
    options?: ErrorOptions,
  ) {
    super(`${op} ${object}: ${reason}`, options);
    this.name = "VmnicError";
    this.op = op;
    this.object = object;
    this.reason = reason;
  }
}

/** Bad input: nothing was changed (exit code 2). */
export class InvalidInputError extends VmnicError {
  /** 2: bad usage or input, nothing changed. */
  override readonly exitCode: number = 2;
  /** Builds the error. */
  constructor(op: string, object: string, reason: string) {
    super(op, object, reason);
    this.name = "InvalidInputError";
  }
}

/**
 * The request contradicts what exists (a NIC with another network at that
 * index, a netns this install did not make, a prefix another install
 * owns): nothing was changed (exit code 2).
 */
export class ConflictError extends InvalidInputError {
  /** Builds the error. */
  constructor(op: string, object: string, reason: string) {
    super(op, object, reason);
    this.name = "ConflictError";
  }
}

/** A VM, NIC or network that does not exist (exit code 3). */
export class NotFoundError extends VmnicError {
  /** 3: not found. */
  override readonly exitCode: number = 3;
  /** Builds the error. */
  constructor(op: string, object: string, reason: string) {
    super(op, object, reason);
    this.name = "NotFoundError";
  }
}

/** Another process holds the VM's lock past the caller's wait. */
export class VmBusyError extends VmnicError {
  /** Builds the error; `reason` says who holds it. */
  constructor(
    op: string,
    vmId: string,
    reason = "another vmnic process is working on this VM",
  ) {
    super(op, vmId, `busy: ${reason}`);
    this.name = "VmBusyError";
  }
}

/**
 * An operation that failed part-way; what it changed was rolled back (add)
 * or is reported (teardowns). `cause` holds the underlying error.
 */
export class OperationError extends VmnicError {
  /** Builds the error. */
  constructor(op: string, object: string, reason: string, cause?: unknown) {
    super(op, object, reason, cause === undefined ? undefined : { cause });
    this.name = "OperationError";
  }
}

/**
 * An add whose rollback could not undo everything: what is left stays
 * recorded (`failed`, with the error) for a retry or `delete --force`.
 */
export class RollbackIncompleteError extends OperationError {
  /** Builds the error. */
  constructor(op: string, object: string, reason: string, cause?: unknown) {
    super(op, object, reason, cause);
    this.name = "RollbackIncompleteError";
  }
}

/**
 * The operation stopped at a step boundary because the process was asked
 * to end (SIGTERM, SIGINT) and rolled back what it had begun.
 */
export class InterruptedError extends OperationError {
  /** Builds the error; `reason` says by what (`interrupted by SIGTERM`). */
  constructor(op: string, object: string, reason: string) {
    super(op, object, reason);
    this.name = "InterruptedError";
  }
}

/**
 * The record database is missing or empty while this install has state on
 * the host: vmnic refuses to treat that as "no VMs" (docs/state-machine.md,
 * "Lost records").
 */
export class RecordsLostError extends OperationError {
  /** Builds the error. */
  constructor(op: string, object: string, reason: string) {
    super(op, object, reason);
    this.name = "RecordsLostError";
  }
}

/**
 * An error at the provider's boundary: vmnic's own errors pass through;
 * a kernel layer's refusal of bad input becomes {@linkcode InvalidInputError},
 * a lock wait that ran out {@linkcode VmBusyError}, and anything else an
 * {@linkcode OperationError} carrying it as `cause`, so library callers only
 * ever match on the classes `mod.ts` exports.
 */
export function toVmnicError(
  op: string,
  object: string,
  e: unknown,
): VmnicError {
  if (e instanceof VmnicError) return e;
  if (e instanceof InvalidArgumentError) {
    return new InvalidInputError(op, object, e.message);
  }
  if (e instanceof LockTimeoutError) {
    return new VmBusyError(op, object, e.holder);
  }
  if (e instanceof LockInterruptedError) {
    return new InterruptedError(op, object, `interrupted by ${e.signal}`);
  }
  return new OperationError(op, object, messageOf(e), e);
}

/**
 * The same kind of error as `e` for `op` on `object`, with a new reason
 * (e.g. the original one plus what the rollback did): callers keep
 * matching on the class, and the exit code stays the one of the cause.
 */
export function rephrase(
  e: unknown,
  op: string,
  object: string,
  reason: string,
): VmnicError {
  if (e instanceof ConflictError) return new ConflictError(op, object, reason);
  if (e instanceof InvalidInputError) {
    return new InvalidInputError(op, object, reason);
  }
  if (e instanceof NotFoundError) return new NotFoundError(op, object, reason);
  if (e instanceof InterruptedError) {
    return new InterruptedError(op, object, reason);
  }
  if (e instanceof RollbackIncompleteError) {
    return new RollbackIncompleteError(op, object, reason, e.cause);
  }
  return new OperationError(
    op,
    object,
    reason,
    e instanceof OperationError && e.cause !== undefined ? e.cause : e,
  );
}

/** The message of any thrown value. */
export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * The part of an error worth nesting in another message: a vmnic error's
 * reason (its op and object are said by the outer message), else the
 * message.
 */
export function reasonOf(e: unknown): string {
  return e instanceof VmnicError ? e.reason : messageOf(e);
}
