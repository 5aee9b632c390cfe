/**
 * `vmnic quiesce <vm>`.
 *
 * @module
 */
import { validateVmId } from "../../provider/validate.ts";
import { defineCommand } from "../command.ts";

export default defineCommand({
  name: "quiesce",
  usage: "vmnic quiesce <vm>",
  positionals: [1, 1],
  options: {},
  parse(p) {
    validateVmId("quiesce", p.positionals[0]);
    return { vmId: p.positionals[0] };
  },
  run: (i, { provider }) => provider.quiesce(i.vmId, true),
  json: (nics, i) => ({
    vmId: i.vmId,
    state: "quiesced",
    nics: nics.map((n) => n.ifName),
  }),
  human: (nics, i) =>
    `${i.vmId}: ${nics.map((n) => n.ifName).join(", ") || "no NICs"} down`,
});
