/**
 * Typed errors of the store and the per-VM locks.
 *
 * @module
 */

/** A store operation that failed, naming the operation and the object. */
export class StoreError extends Error {
  /** What was attempted, e.g. `"insert nic"`, `"open database"`. */
  readonly op: string;
  /** What it was attempted on, e.g. `"vm1/0"` or a file path. */
  readonly object: string;

  /** `op` on `object` failed, `reason` saying why. */
  constructor(
    op: string,
    object: string,
    reason: string,
    options?: ErrorOptions,
  ) {
    super(`${op} ${object}: ${reason}`, options);
    this.name = "StoreError";
    this.op = op;
    this.object = object;
  }
}

/** A NIC with this `(vmId, index)` is already recorded; nothing was changed. */
export class DuplicateNicError extends StoreError {
  /** The VM. */
  readonly vmId: string;
  /** The NIC index already taken. */
  readonly index: number;

  /** NIC `index` of `vmId` already exists. */
  constructor(vmId: string, index: number, options?: ErrorOptions) {
    super(
      "insert nic",
      `${vmId}/${index}`,
      `VM ${vmId} already has a NIC with index ${index}`,
      options,
    );
    this.name = "DuplicateNicError";
    this.vmId = vmId;
    this.index = index;
  }
}

/** Another NIC of this install has this MAC; nothing was changed. */
export class DuplicateMacError extends StoreError {
  /** The MAC. */
  readonly mac: string;

  /** `mac` is taken. */
  constructor(mac: string, options?: ErrorOptions) {
    super(
      "insert nic",
      mac,
      `MAC ${mac} is another NIC's of this install`,
      options,
    );
    this.name = "DuplicateMacError";
    this.mac = mac;
  }
}

/**
 * A lock that could not be taken (bad name, timeout, I/O failure); the
 * object is the lock's name (the VM id).
 */
export class LockError extends StoreError {
  /** Taking the lock `object` failed, `reason` saying why. */
  constructor(
    op: string,
    object: string,
    reason: string,
    options?: ErrorOptions,
  ) {
    super(op, object, reason, options);
    this.name = "LockError";
  }
}

/** Waiting for a lock took longer than the caller allowed. */
export class LockTimeoutError extends LockError {
  /** The wait limit that expired. */
  readonly timeoutMs: number;
  /** Who holds it, e.g. `held by pid 42 (add) since …`. */
  readonly holder: string;

  /** Waiting `timeoutMs` for the lock `object` was not enough. */
  constructor(op: string, object: string, timeoutMs: number, holder: string) {
    super(op, object, `${holder}; gave up after ${timeoutMs} ms`);
    this.name = "LockTimeoutError";
    this.timeoutMs = timeoutMs;
    this.holder = holder;
  }
}

/** Waiting for a lock was given up because the process was asked to end. */
export class LockInterruptedError extends LockError {
  /** The signal (or reason) that ended the wait. */
  readonly signal: string;

  /** Waiting for `object` ended by `signal`. */
  constructor(op: string, object: string, signal: string) {
    super(op, object, `interrupted by ${signal} while waiting`);
    this.name = "LockInterruptedError";
    this.signal = signal;
  }
}
