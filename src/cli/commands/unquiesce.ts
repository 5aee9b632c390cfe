/**
 * `vmnic unquiesce <vm>`.
 *
 * @module
 */
import { validateVmId } from "../../provider/validate.ts";
import { defineCommand } from "../command.ts";

export default defineCommand({
  name: "unquiesce",
  usage: "vmnic unquiesce <vm>",
  positionals: [1, 1],
  options: {},
  parse(p) {
    validateVmId("unquiesce", p.positionals[0]);
    return { vmId: p.positionals[0] };
  },
  run: (i, { provider }) => provider.quiesce(i.vmId, false),
  json: (nics, i) => ({
    vmId: i.vmId,
    state: "running",
    nics: nics.map((n) => n.ifName),
  }),
  human: (nics, i) =>
    `${i.vmId}: ${nics.map((n) => n.ifName).join(", ") || "no NICs"} up`,
});
