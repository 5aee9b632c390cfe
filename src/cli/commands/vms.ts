/**
 * `vmnic vms` / `GET /v1/vms`: every VM this install holds, NICs or not.
 *
 * @module
 */
import { defineCommand } from "../command.ts";
import { arr, vmInfo } from "../schemas.ts";

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
        `${v.quiesced ? "  quiesced" : ""}${v.deleting ? "  deleting" : ""}  ` +
        (v.nics.length
          ? v.nics.map((n) => `${n.index}:${n.state}`).join(" ")
          : "no NICs")
      ).join("\n")
      : "no VMs",
  http: {
    method: "GET",
    path: "/v1/vms",
    response: arr(vmInfo),
  },
});
