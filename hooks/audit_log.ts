/**
 * Example hook: appends one JSON line per event to the file named by
 * `VMNIC_AUDIT_LOG` (created 0600); does nothing when that is unset.
 *
 * Line fields: timestamp, event, operation, vmId, index, tap, mac, ips.
 *
 * @module
 */
import { defineHook } from "../src/hooks/types.ts";

export default defineHook({
  // Without a log to write, it has nothing to do.
  active: () => Boolean(Deno.env.get("VMNIC_AUDIT_LOG")),
  async run(ctx) {
    const path = Deno.env.get("VMNIC_AUDIT_LOG");
    if (!path) return;
    const line = JSON.stringify({
      timestamp: new Date().toISOString(),
      event: ctx.event,
      operation: ctx.operation,
      vmId: ctx.vmId,
      index: ctx.index,
      tap: ctx.tap ?? null,
      mac: ctx.mac ?? null,
      ips: ctx.ips ?? [],
    }) + "\n";
    // One write with O_APPEND: lines from concurrent processes never mix.
    await Deno.writeTextFile(path, line, {
      append: true,
      create: true,
      mode: 0o600,
    });
  },
});
