/**
 * Preloaded (`deno run --preload`) by tests that guard a process's
 * start-up cost: reports on stderr, with the caller, every use of the
 * global `setTimeout` or `setInterval`, whose first call loads Deno's Node
 * timers (about 10 ms; `deno task bench:cold`). src/sys/timers.ts is the
 * cheap alternative.
 *
 * @module
 */

/** The line a use prints, for the test to look for. */
export const NODE_TIMER_USED = "node-timer-trap: used";

for (const name of ["setTimeout", "setInterval"] as const) {
  const original = globalThis[name];
  // deno-lint-ignore no-explicit-any
  (globalThis as any)[name] = (...args: any[]) => {
    const where = new Error().stack?.split("\n").slice(2, 4).join(" <") ?? "";
    console.error(`${NODE_TIMER_USED} ${name} ${where.trim()}`);
    // deno-lint-ignore no-explicit-any
    return (original as any)(...args);
  };
}
