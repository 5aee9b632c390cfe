/**
 * A separate process that holds a VM's lock, as another vmnic process
 * working on that VM would: prints `acquired` (or `busy`), then sleeps until
 * killed.
 *
 * Usage: _lock_holder.ts <runDir> <vmId>
 *
 * @module
 */
import { acquireVmLock } from "../../src/store/locks.ts";

const [runDir, vmId] = Deno.args;
const lock = await acquireVmLock(runDir, vmId, { waitMs: 0, op: "test" });
console.log(lock ? "acquired" : "busy");
if (lock) {
  // Held until the test kills this process (a bounded sleep, in case it doesn't).
  await new Promise((resolve) => setTimeout(resolve, 300_000));
}
