/**
 * Crash points for the reliability tests: when `VMNIC_FAULT_POINT` names one
 * of {@linkcode FAULT_POINTS}, the process SIGKILLs itself right there, as a
 * power cut or OOM kill would. The tests then check that the documented
 * recovery (docs/state-machine.md) leaves nothing behind. Unset (always, in
 * production), a point is one string comparison.
 *
 * @module
 */

/** Every place a crash is simulated, in the order operations reach them. */
export const FAULT_POINTS = [
  "add:vm-recorded",
  "add:netns-created",
  "add:record-inserted",
  "add:cni-added",
  "add:plumbed",
  "add:active",
  "retire:marked",
  "retire:unplumbed",
  "retire:cni-deleted",
  "delete:marked",
  "delete:nic-retired",
  "delete:netns-deleted",
  "recover:nic-retired",
  "recover:repaired",
  "quiesce:recorded",
  "pool:slot-recorded",
  "pool:claim-recorded",
  "pool:netns-renamed",
  "pool:claimed",
] as const;

/** One of {@linkcode FAULT_POINTS}. */
export type FaultPoint = typeof FAULT_POINTS[number];

const armed: string | undefined = (() => {
  try {
    return Deno.env.get("VMNIC_FAULT_POINT");
  } catch {
    return undefined; // no env permission: never armed
  }
})();

/** SIGKILLs this process when `point` is the armed fault point. */
export function faultPoint(point: FaultPoint): void {
  if (armed === point) Deno.kill(Deno.pid, "SIGKILL");
}
