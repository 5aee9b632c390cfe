/**
 * `vmnic remove <vm> <index>... [--force]`.
 *
 * @module
 */
import { validateIndex, validateVmId } from "../../provider/validate.ts";
import { UsageError } from "../args.ts";
import { defineCommand } from "../command.ts";

export default defineCommand({
  name: "remove",
  usage: "vmnic remove <vm> <index>... [--force]",
  positionals: [2, -1],
  options: {
    force: {
      type: "boolean",
      help:
        "drop a NIC even when CNI DEL fails (what the plugins keep is reported)",
    },
  },
  parse(p) {
    const op = "remove";
    const vmId = p.positionals[0];
    validateVmId(op, vmId);
    const indices = p.positionals.slice(1).map((s) => {
      if (!/^\d+$/.test(s)) {
        throw new UsageError(
          `remove: index must be an integer 0–31, got ${JSON.stringify(s)}`,
          op,
        );
      }
      validateIndex(op, vmId, Number(s));
      return Number(s);
    });
    return { vmId, indices, force: p.values.force === true };
  },
  run: (i, { provider }) =>
    provider.remove(i.vmId, ...i.indices, { force: i.force }),
  human: (r) =>
    [
      r.removed.length
        ? `removed NIC ${r.removed.join(", ")} of ${r.vmId}`
        : `nothing removed from ${r.vmId}`,
      ...(r.absent.length
        ? [`no NIC ${r.absent.join(", ")} (nothing to do)`]
        : []),
      ...r.warnings.map((w) => `warning: ${w}`),
    ].join("\n"),
});
