/**
 * The few libc calls the namespace and TAP code needs beyond
 * `src/sys/libc.ts`: `unlink`, `ioctl` with an integer argument (the TUN
 * ioctls take the value itself, not a pointer), and `read`, `readlink`,
 * `fstatfs` for `/proc` files, which Deno's own file APIs refuse without
 * `--allow-all`. errno is read through `errno()` of `src/sys/libc.ts`: same
 * libc, same thread.
 *
 * @module
 */

const SYMBOLS = {
  unlink: { parameters: ["buffer"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  readlink: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
  fstatfs: { parameters: ["i32", "buffer"], result: "i32" },
  ioctl_int: {
    name: "ioctl",
    parameters: ["i32", "u64", "u64"],
    result: "i32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

type LibcExtra = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let lib: LibcExtra | undefined;

/** The extra libc symbols, opened on first use. */
export function libcExtra(): LibcExtra {
  if (!lib) lib = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  return lib;
}
