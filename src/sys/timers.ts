/**
 * Timers for the paths a short-lived CLI process runs (plugin and hook
 * deadlines, lock waits, the event log's flush).
 *
 * Deno's global `setTimeout` returns Node's `Timeout`: its first call in a
 * process loads Deno's Node timers, about 10 ms (`deno task bench:cold`),
 * which a `vmnic add --no-daemon` would pay on every run. A timer made from
 * `AbortSignal.timeout` runs on the runtime's own clock and costs a fraction
 * of that the first time (the same bench, its next row). It keeps the process alive only while a
 * listener waits on it, so a cancelled timer holds nothing up.
 *
 * @example Cancel a deadline once the work is done
 * ```ts
 * import { after } from "./timers.ts";
 *
 * let late = false;
 * const deadline = after(1000, () => late = true);
 * deadline.cancel();
 * ```
 *
 * @module
 */

/** A call scheduled by {@linkcode after}. */
export interface Timer {
  /** Cancels the call if it has not run yet. Idempotent. */
  cancel(): void;
}

/**
 * The longest delay a timer takes, in ms (about 24.8 days); longer or
 * infinite delays wait this long. (Node's `setTimeout` would wait 1 ms.)
 */
export const MAX_DELAY_MS = 2 ** 31 - 1;

let globalTimers = false;

/**
 * Makes {@linkcode after} and {@linkcode sleep} use the global `setTimeout`
 * from now on in this process. For a long-lived process that loads Node's
 * timers anyway (the daemon): a cancelled `setTimeout` is freed at once,
 * while a cancelled `AbortSignal.timeout` stays pending until its time
 * comes (a plugin's deadline: a minute).
 */
export function preferGlobalTimers(): void {
  globalTimers = true;
}

/** Calls `fn` once, `ms` milliseconds from now, unless cancelled first. */
export function after(ms: number, fn: () => void): Timer {
  if (globalTimers) {
    const handle = setTimeout(fn, delayOf(ms));
    return { cancel: () => clearTimeout(handle) };
  }
  const signal = AbortSignal.timeout(delayOf(ms));
  let pending = true;
  const run = () => {
    if (!pending) return;
    pending = false;
    fn();
  };
  signal.addEventListener("abort", run, { once: true });
  return {
    cancel() {
      pending = false;
      // Without a listener the runtime no longer waits for the timer.
      signal.removeEventListener("abort", run);
    },
  };
}

/**
 * What `p` resolves to, or null when it has not within `ms` milliseconds
 * (it is not stopped: the caller ends what it waits for).
 */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | null> {
  let timer: Timer | undefined;
  const timeout = new Promise<null>((resolve) => {
    timer = after(ms, () => resolve(null));
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    timer?.cancel();
  }
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => void after(ms, resolve));
}

/**
 * `ms` as `AbortSignal.timeout` takes it: a whole number from 0 to
 * {@linkcode MAX_DELAY_MS} (it throws on a negative, NaN or infinite one).
 */
function delayOf(ms: number): number {
  if (Number.isNaN(ms) || ms <= 0) return 0;
  return Math.min(Math.ceil(ms), MAX_DELAY_MS);
}
