/**
 * A separate process for the lock tests: takes the lock of a VM, reports
 * when, holds it for a while, releases it and reports when.
 *
 * Usage: lock_holder.ts <runDir> <vmId> <holdMs> <wait|nowait>
 * Prints `acquired <epoch ms>` (or `busy`) and `released <epoch ms>`.
 *
 * @module
 */
import { acquireVmLock } from "../../src/store/locks.ts";

const [runDir, vmId, holdMs, mode] = Deno.args;
const lock = await acquireVmLock(runDir, vmId, {
  waitMs: mode === "wait" ? 60_000 : 0,
  op: "test",
});
if (!lock) {
  console.log("busy");
  Deno.exit(0);
}
console.log(`acquired ${Date.now()}`);
await new Promise((resolve) => setTimeout(resolve, Number(holdMs)));
// Report before releasing, so "released" is never later than the release.
console.log(`released ${Date.now()}`);
lock.release();
