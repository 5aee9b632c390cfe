/**
 * `vmnic list [--vm ID]`.
 *
 * @module
 */
import { validateVmId } from "../../provider/validate.ts";
import { str } from "../args.ts";
import { defineCommand } from "../command.ts";
import { nicTable } from "../output.ts";

export default defineCommand({
  name: "list",
  usage: "vmnic list [--vm ID]",
  positionals: [0, 0],
  options: {
    vm: { type: "string", value: "ID", help: "only this VM's NICs" },
  },
  parse(p) {
    const vmId = str(p, "vm");
    if (vmId !== undefined) validateVmId("list", vmId);
    return { vmId };
  },
  run: (i, { provider }) => provider.list(i.vmId ? { vmId: i.vmId } : {}),
  human: (nics) => nicTable(nics),
});
