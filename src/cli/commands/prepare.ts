/**
 * `vmnic prepare <vm> [--adopt]`: the VM's record and netns.
 *
 * @module
 */
import { defineCommand } from "../command.ts";
import { validateVmId } from "../../provider/validate.ts";

export default defineCommand({
  name: "prepare",
  usage: "vmnic prepare <vm> [--adopt]",
  positionals: [1, 1],
  options: {
    adopt: {
      type: "boolean",
      help: "take over a netns of that name that no record here accounts " +
        "for (never another vmnic install's)",
    },
  },
  parse(p) {
    const vmId = p.positionals[0];
    validateVmId("prepare", vmId);
    return { vmId, adopt: p.values.adopt === true };
  },
  async run(i, { provider }) {
    const netnsPath = await provider.prepare(i.vmId, {}, { adopt: i.adopt });
    return { vmId: i.vmId, netnsPath };
  },
  human: (o) => o.netnsPath,
});
