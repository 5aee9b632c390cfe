/**
 * Interface name validation, as the kernel's `dev_valid_name()` checks it,
 * done before any call so a bad name fails with a clear message and nothing
 * is changed.
 *
 * @module
 */
import { InvalidArgumentError } from "../sys/errors.ts";
import { IFNAMSIZ } from "./constants.ts";

/**
 * Throws {@linkcode InvalidArgumentError} unless `name` is a valid Linux
 * interface name: 1..15 bytes, not `.` or `..`, no `/`, `:`, whitespace or
 * NUL, and no `%` (the kernel would treat it as a template such as `tap%d`
 * and pick a different name than the one asked for).
 */
export function validateIfName(name: string): void {
  const op = "validate interface name";
  const bytes = new TextEncoder().encode(name).length;
  if (bytes === 0) throw new InvalidArgumentError(op, name, "empty");
  if (bytes > IFNAMSIZ - 1) {
    throw new InvalidArgumentError(
      op,
      name,
      `${bytes} bytes, at most ${IFNAMSIZ - 1} allowed`,
    );
  }
  if (name === "." || name === "..") {
    throw new InvalidArgumentError(op, name, "'.' and '..' are reserved");
  }
  const bad = /[/:%\s\0]/.exec(name);
  if (bad) {
    throw new InvalidArgumentError(
      op,
      name,
      `contains ${JSON.stringify(bad[0])}, not allowed in interface names`,
    );
  }
}
