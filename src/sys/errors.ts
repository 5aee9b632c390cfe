/**
 * The typed error every kernel-facing call throws.
 *
 * @module
 */
import { errnoMessage, errnoName } from "./errno.ts";

/**
 * A failed system call or netlink request, naming what was attempted, on
 * which object (device, path, netns), and the errno the kernel returned.
 *
 * @example
 * ```ts
 * import { KernelError } from "./errors.ts";
 * const err = new KernelError("create link", "tap0", 17);
 * console.assert(err.code === "EEXIST");
 * console.assert(err.message === "create link tap0: EEXIST (File exists)");
 * ```
 */
export class KernelError extends Error {
  /** What was attempted, e.g. `"create link"`, `"mount"`. */
  readonly op: string;
  /** The device, path or namespace it was attempted on. */
  readonly object: string;
  /** The errno number the kernel returned. */
  readonly errno: number;
  /** The errno name, e.g. `"EEXIST"`. */
  readonly code: string;

  constructor(op: string, object: string, errno: number, detail?: string) {
    const code = errnoName(errno);
    super(
      `${op} ${object}: ${code} (${errnoMessage(errno)})${
        detail ? `: ${detail}` : ""
      }`,
    );
    this.name = "KernelError";
    this.op = op;
    this.object = object;
    this.errno = errno;
    this.code = code;
  }
}

/**
 * Input that the kernel layer refuses before asking the kernel: an interface
 * name too long, a namespace name with `/`, and the like. Nothing is changed.
 */
export class InvalidArgumentError extends Error {
  /** What was attempted. */
  readonly op: string;
  /** The offending value. */
  readonly object: string;

  constructor(op: string, object: string, reason: string) {
    super(`${op} ${JSON.stringify(object)}: ${reason}`);
    this.name = "InvalidArgumentError";
    this.op = op;
    this.object = object;
  }
}

/** Whether `err` is a {@linkcode KernelError} with one of these errno values. */
export function isErrno(err: unknown, ...codes: number[]): err is KernelError {
  return err instanceof KernelError && codes.includes(err.errno);
}
