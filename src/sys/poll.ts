/**
 * Waiting on file descriptors without blocking the event loop: `poll(2)`
 * runs on a worker thread (a nonblocking FFI symbol) and resolves with the
 * descriptors that are ready, and an `eventfd(2)` wakes such a wait early
 * (to stop it, or to change what it waits on).
 *
 * @module
 */
import { check, libc } from "./libc.ts";

/** `<poll.h>`: readable. */
export const POLLIN = 0x1;
/** `<poll.h>`: error condition (reported whether asked for or not). */
export const POLLERR = 0x8;
/** `<poll.h>`: hung up. */
export const POLLHUP = 0x10;
/** `<poll.h>`: not an open descriptor. */
export const POLLNVAL = 0x20;

/** `sizeof(struct pollfd)`: int fd, short events, short revents. */
const POLLFD_SIZE = 8;
/** `<sys/eventfd.h>`: close on exec. */
const EFD_CLOEXEC = 0o2000000;
/** `<sys/eventfd.h>`: reads and writes never block. */
const EFD_NONBLOCK = 0o4000;
/** An eventfd counter is read and written as one u64. */
const EVENTFD_VALUE_SIZE = 8;

/**
 * Waits up to `timeoutMs` (-1: for ever) until one of `fds` is readable
 * (or in error), on a worker thread; resolves with each ready descriptor's
 * `revents`. An empty map: the time ran out, or the wait was interrupted
 * (the caller just waits again).
 */
export async function pollReadable(
  fds: readonly number[],
  timeoutMs: number,
): Promise<Map<number, number>> {
  // Off the JS heap (an ArrayBuffer of its own): the worker reads it while
  // the main thread runs on.
  const set = new Uint8Array(new ArrayBuffer(fds.length * POLLFD_SIZE));
  const view = new DataView(set.buffer);
  fds.forEach((fd, i) => {
    view.setInt32(i * POLLFD_SIZE, fd, true);
    view.setInt16(i * POLLFD_SIZE + 4, POLLIN, true);
  });
  const n = await libc().poll(set, BigInt(fds.length), timeoutMs);
  const ready = new Map<number, number>();
  if (n <= 0) return ready;
  fds.forEach((fd, i) => {
    const revents = view.getInt16(i * POLLFD_SIZE + 6, true);
    if (revents) ready.set(fd, revents);
  });
  return ready;
}

/**
 * An `eventfd(2)`: one side {@linkcode Wakeup.wake}s, the descriptor
 * becomes readable, and a {@linkcode pollReadable} that waits on it
 * returns.
 */
export class Wakeup {
  readonly #fd: number;
  #closed = false;

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /** A new eventfd (non-blocking, close-on-exec). */
  static open(): Wakeup {
    return new Wakeup(
      check(libc().eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd", "wakeup"),
    );
  }

  /** The descriptor to wait on. */
  get fd(): number {
    return this.#fd;
  }

  /** Makes the descriptor readable. */
  wake(): void {
    if (this.#closed) return;
    const one = new Uint8Array(EVENTFD_VALUE_SIZE);
    new DataView(one.buffer).setBigUint64(0, 1n, true);
    libc().write(this.#fd, one, BigInt(one.length));
  }

  /** Makes it unreadable again (reads the counter). */
  drain(): void {
    if (this.#closed) return;
    const buf = new Uint8Array(EVENTFD_VALUE_SIZE);
    libc().read(this.#fd, buf, BigInt(buf.length));
  }

  /** Closes it; idempotent. Nothing may wait on it any more. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    libc().close(this.#fd);
  }
}
