/**
 * libc over Deno FFI: the handful of calls vmnic needs for namespaces,
 * netlink sockets and TAP devices, with errno read right after each call.
 * The only place that opens a native library.
 *
 * FFI calls run on the JS main thread, so the errno read through
 * `__errno_location` is the one of the call just made.
 *
 * @module
 */
import { KernelError } from "./errors.ts";

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  sendto: {
    parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"],
    result: "isize",
  },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  setsockopt: {
    parameters: ["i32", "i32", "i32", "buffer", "u32"],
    result: "i32",
  },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  setns: { parameters: ["i32", "i32"], result: "i32" },
  unshare: { parameters: ["i32"], result: "i32" },
  mount: {
    parameters: ["buffer", "buffer", "buffer", "u64", "buffer"],
    result: "i32",
  },
  umount2: { parameters: ["buffer", "i32"], result: "i32" },
  gettid: { parameters: [], result: "i32" },
  unlink: { parameters: ["buffer"], result: "i32" },
  // read/readlink/fstatfs serve /proc files, which Deno's own file APIs
  // refuse without --allow-all.
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  readlink: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
  fstatfs: { parameters: ["i32", "buffer"], result: "i32" },
  // The TUN ioctls take the value itself, not a pointer to it.
  ioctl_int: {
    name: "ioctl",
    parameters: ["i32", "u64", "u64"],
    result: "i32",
  },
  // Files opened without following symlinks, locked and inspected through
  // their descriptor (the store's database and lock files).
  flock: { parameters: ["i32", "i32"], result: "i32" },
  fstat: { parameters: ["i32", "buffer"], result: "i32" },
  fchmod: { parameters: ["i32", "u32"], result: "i32" },
  pwrite: {
    parameters: ["i32", "buffer", "usize", "i64"],
    result: "isize",
  },
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  // The record backups' appends (a Deno file op costs ten times more).
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  // The watcher (src/watcher): netlink notifications with the netns id
  // they came from, and a wait on its descriptors off the main thread (a
  // nonblocking symbol runs on a worker and returns a Promise; its errno is
  // that worker's, out of reach).
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  poll: {
    parameters: ["buffer", "u64", "i32"],
    result: "i32",
    nonblocking: true,
  },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let lib: Libc | undefined;

/** The libc symbols, opened on first use so importing needs no FFI permission. */
export function libc(): Libc {
  if (!lib) lib = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  return lib;
}

/** The calling thread's errno, read right after a failed call. */
export function errno(): number {
  const p = libc().__errno_location();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
}

/** A NUL-terminated copy of `s` for passing as `const char *`. */
export function cstr(s: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(s);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/**
 * Throws a {@linkcode KernelError} for `op` on `object` when `ret` is
 * negative (the libc convention), else returns `ret`.
 */
export function check<T extends number | bigint>(
  ret: T,
  op: string,
  object: string,
): T {
  if (ret < 0) throw new KernelError(op, object, errno());
  return ret;
}

/** The kernel thread id of the JS main thread (where FFI calls run). */
export function gettid(): number {
  return libc().gettid();
}
