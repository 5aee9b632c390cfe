/**
 * `vmnic vms`: every VM this install holds, NICs or not.
 *
 * @module
 */
import { defineCommand } from "../command.ts";

export default defineCommand({
  name: "vms",
  usage: "vmnic vms",
  positionals: [0, 0],
  options: {},
  parse: () => ({}),
  run: (_i, { provider }) => provider.vms(),
  human: (vms) =>
    vms.length
      ? vms.map((v) =>
        `${v.vmId}  ${v.netns ? v.netnsPath : `${v.netnsPath} (missing)`}` +
        `${v.quiesced ? "  quiesced" : ""}  ` +
        (v.nics.length
          ? v.nics.map((n) => `${n.index}:${n.state}`).join(" ")
          : "no NICs")
      ).join("\n")
      : "no VMs",
});
