/**
 * `vmnic prepare <vm> [--adopt]` / `POST /v1/vms/{vm}`: the VM's record
 * and netns.
 *
 * @module
 */
import { validateVmId } from "../../provider/validate.ts";
import { defineCommand } from "../command.ts";
import { bodyFields, boolField, onlyQuery } from "../http_input.ts";
import { bool, obj, prepareResult } from "../schemas.ts";

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
  http: {
    method: "POST",
    path: "/v1/vms/{vm}",
    body: obj({ adopt: bool }, []),
    response: prepareResult,
    input({ params, query, body }) {
      validateVmId("prepare", params.vm);
      onlyQuery("prepare", params.vm, query, []);
      const f = bodyFields("prepare", params.vm, body, ["adopt"]);
      return {
        vmId: params.vm,
        adopt: boolField("prepare", params.vm, f, "adopt") ?? false,
      };
    },
    request: (i) => ({
      params: { vm: i.vmId },
      query: {},
      body: i.adopt ? { adopt: true } : {},
    }),
  },
});
