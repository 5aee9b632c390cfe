/**
 * `vmnic list [--vm ID]` / `GET /v1/nics` and `GET /v1/vms/{vm}/nics`.
 *
 * @module
 */
import { validateVmId } from "../../provider/validate.ts";
import { str } from "../args.ts";
import { defineCommand } from "../command.ts";
import { onlyQuery } from "../http_input.ts";
import { nicTable } from "../output.ts";
import { nicList } from "../schemas.ts";

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
  http: {
    method: "GET",
    path: "/v1/vms/{vm}/nics",
    response: nicList,
    input({ params, query }) {
      validateVmId("list", params.vm);
      onlyQuery("list", params.vm, query, []);
      return { vmId: params.vm };
    },
    request(i) {
      // Every NIC: the CLI runs `list` without --vm in process.
      if (i.vmId === undefined) throw new RangeError("the route names a VM");
      return { params: { vm: i.vmId }, query: {} };
    },
  },
});
