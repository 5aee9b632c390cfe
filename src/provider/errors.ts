/**
 * The provider's error classes. Each says what failed and on which VM or NIC;
 * the CLI maps them to its exit codes (2 bad input, 3 not found, 1 the rest).
 *
 * @module
 */
import { InvalidArgumentError } from "../wiring/netns.ts";

/** Base class of the errors the provider throws on purpose. */
export class VmnicError extends Error {
  /** The operation (`add`, `remove`, …). */
  readonly op: string;
  /** The VM or NIC concerned, when there is one. */
  readonly object: string;

  /** Builds the error. */
  constructor(
    op: string,
    object: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "VmnicError";
    this.op = op;
    this.object = object;
  }
}

/** Bad input: nothing was changed (exit code 2). */
export class InvalidInputError extends VmnicError {
  /** Builds the error. */
  constructor(op: string, object: string, message: string) {
    super(op, object, message);
    this.name = "InvalidInputError";
  }
}

/** A VM, NIC or network that does not exist (exit code 3). */
export class NotFoundError extends VmnicError {
  /** Builds the error. */
  constructor(op: string, object: string, message: string) {
    super(op, object, message);
    this.name = "NotFoundError";
  }
}

/** Another process holds the VM's lock and the caller chose not to wait. */
export class VmBusyError extends VmnicError {
  /** Builds the error. */
  constructor(op: string, vmId: string) {
    super(
      op,
      vmId,
      `${op} ${vmId}: another vmnic process is working on this VM`,
    );
    this.name = "VmBusyError";
  }
}

/**
 * An operation that failed part-way; what it changed was rolled back (add)
 * or is reported (teardowns). `cause` holds the underlying error.
 */
export class OperationError extends VmnicError {
  /** Builds the error. */
  constructor(op: string, object: string, message: string, cause?: unknown) {
    super(op, object, message, { cause });
    this.name = "OperationError";
  }
}

/**
 * An error at the provider's boundary: vmnic's own errors pass through;
 * a kernel layer's refusal of bad input becomes {@linkcode InvalidInputError}
 * and anything else an {@linkcode OperationError} carrying it as `cause`, so
 * library callers only ever match on the classes `mod.ts` exports.
 */
export function toVmnicError(
  op: string,
  object: string,
  e: unknown,
): VmnicError {
  if (e instanceof VmnicError) return e;
  if (e instanceof InvalidArgumentError) {
    return new InvalidInputError(op, object, `${op} ${object}: ${e.message}`);
  }
  return new OperationError(op, object, `${op} ${object}: ${messageOf(e)}`, e);
}

/** The message of any thrown value. */
export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * An add whose rollback could not undo everything: the record of what is
 * left stays (marked `adding`) for the next `delete` or `gc` to finish.
 */
export class RollbackIncompleteError extends OperationError {
  /** Builds the error. */
  constructor(op: string, object: string, message: string, cause?: unknown) {
    super(op, object, message, cause);
    this.name = "RollbackIncompleteError";
  }
}
