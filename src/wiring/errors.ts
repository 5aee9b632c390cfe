/**
 * The kernel layer's error types and IP parsing, for the layers above: a
 * light module (no netlink, no FFI), so the CLI can check input without
 * loading the kernel code.
 *
 * @module
 */
export { InvalidArgumentError, KernelError } from "../sys/errors.ts";
export { parseIP } from "../kernel/ipaddr.ts";
