/**
 * `vmnic list [--vm ID | --pool]` / `GET /v1/vms/{vm}/nics`.
 *
 * @module
 */
import { validateVmId } from "../../provider/validate.ts";
import { str, UsageError } from "../args.ts";
import { defineCommand } from "../command.ts";
import { onlyQuery } from "../http_input.ts";
import { nicTable } from "../output.ts";
import { nicList } from "../schemas.ts";

export default defineCommand({
  name: "list",
  usage: "vmnic list [--vm ID | --pool]",
  positionals: [0, 0],
  options: {
    vm: { type: "string", value: "ID", help: "only this VM's NICs" },
    pool: {
      type: "boolean",
      help: "the warm pool's slots (their NICs and the IPs they hold)",
    },
  },
  parse(p) {
    const vmId = str(p, "vm");
    if (vmId !== undefined) validateVmId("list", vmId);
    const pool = p.values.pool === true;
    if (pool && vmId !== undefined) {
      throw new UsageError("--pool lists slots, not a VM's NICs", "list");
    }
    return { vmId, pool };
  },
  run: (i, { provider }) =>
    provider.list(i.vmId ? { vmId: i.vmId } : i.pool ? { pool: true } : {}),
  human: (nics) => nicTable(nics),
  http: {
    method: "GET",
    path: "/v1/vms/{vm}/nics",
    response: nicList,
    input({ params, query }) {
      validateVmId("list", params.vm);
      onlyQuery("list", params.vm, query, []);
      return { vmId: params.vm, pool: false };
    },
    request(i) {
      // Every NIC: the CLI runs `list` without --vm in process.
      if (i.vmId === undefined) throw new RangeError("the route names a VM");
      return { params: { vm: i.vmId }, query: {} };
    },
  },
});
