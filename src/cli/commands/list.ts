/**
 * `vmnic list [--vm ID] [--ip ADDRESS]` / `GET /v1/vms/{vm}/nics`
 * (`?ip=ADDRESS` too).
 *
 * @module
 */
import { validateVmId } from "../../provider/validate.ts";
import { str, UsageError } from "../args.ts";
import { defineCommand } from "../command.ts";
import { onlyQuery } from "../http_input.ts";
import { nicTable } from "../output.ts";
import { nicList, str as strS } from "../schemas.ts";

export default defineCommand({
  name: "list",
  usage: "vmnic list [--vm ID] [--ip ADDRESS] | --pool",
  positionals: [0, 0],
  options: {
    vm: { type: "string", value: "ID", help: "only this VM's NICs" },
    ip: {
      type: "string",
      value: "ADDRESS",
      help: "only the NIC holding this address (IPv4 or IPv6)",
    },
    pool: {
      type: "boolean",
      help: "the warm pool's slots (their NICs and the IPs they hold)",
    },
  },
  parse(p) {
    const vmId = str(p, "vm");
    if (vmId !== undefined) validateVmId("list", vmId);
    const ip = str(p, "ip");
    const pool = p.values.pool === true;
    if (pool && (vmId !== undefined || ip !== undefined)) {
      throw new UsageError("--pool lists slots, not a VM's NICs", "list");
    }
    return { vmId, pool, ip };
  },
  run: (i, { provider }) =>
    provider.list(
      i.pool ? { pool: true } : {
        ...(i.vmId ? { vmId: i.vmId } : {}),
        ...(i.ip !== undefined ? { ip: i.ip } : {}),
      },
    ),
  human: (nics) => nicTable(nics),
  http: {
    method: "GET",
    path: "/v1/vms/{vm}/nics",
    query: {
      ip: {
        schema: strS,
        description: "only the NIC holding this address",
      },
    },
    response: nicList,
    input({ params, query }) {
      validateVmId("list", params.vm);
      onlyQuery("list", params.vm, query, ["ip"]);
      return { vmId: params.vm, pool: false, ip: query.ip };
    },
    request(i) {
      // Every NIC: the CLI runs `list` without --vm in process.
      if (i.vmId === undefined) throw new RangeError("the route names a VM");
      return {
        params: { vm: i.vmId },
        query: i.ip !== undefined ? { ip: i.ip } : {} as Record<string, string>,
      };
    },
  },
});
