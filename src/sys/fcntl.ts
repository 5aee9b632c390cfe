/**
 * File constants passed to libc, as `<asm-generic/fcntl.h>`,
 * `<sys/file.h>` and `<sys/stat.h>` name them (x86_64 / generic values).
 *
 * @module
 */

/** `<asm-generic/fcntl.h>`: `open(2)` flags. */
export const O_RDONLY = 0o0;
/** `<asm-generic/fcntl.h>` */
export const O_WRONLY = 0o1;
/** `<asm-generic/fcntl.h>` */
export const O_RDWR = 0o2;
/** `<asm-generic/fcntl.h>`: every write goes to the end. */
export const O_APPEND = 0o2000;
/** `<asm-generic/fcntl.h>` */
export const O_CREAT = 0o100;
/** `<asm-generic/fcntl.h>` */
export const O_EXCL = 0o200;
/** `<asm-generic/fcntl.h>`: fail unless the path is a directory. */
export const O_DIRECTORY = 0o200000;
/** `<asm-generic/fcntl.h>`: fail with ELOOP when the last component is a symlink. */
export const O_NOFOLLOW = 0o400000;
/** `<asm-generic/fcntl.h>` */
export const O_CLOEXEC = 0o2000000;
/**
 * `<asm-generic/fcntl.h>`: a descriptor naming the path without opening
 * the file (never blocks on a FIFO, never wakes a device).
 */
export const O_PATH = 0o10000000;

/** `<sys/file.h>`: `flock(2)` operations. */
export const LOCK_SH = 1;
/** `<sys/file.h>` */
export const LOCK_EX = 2;
/** `<sys/file.h>`: fail with EWOULDBLOCK instead of waiting. */
export const LOCK_NB = 4;
/** `<sys/file.h>` */
export const LOCK_UN = 8;

/** `<sys/stat.h>`: file type bits of `st_mode`. */
export const S_IFMT = 0o170000;
/** `<sys/stat.h>` */
export const S_IFREG = 0o100000;
/** `<sys/stat.h>` */
export const S_IFDIR = 0o040000;
/** `<sys/stat.h>` */
export const S_IFLNK = 0o120000;
