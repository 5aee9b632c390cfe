/**
 * `vmnic remove <vm> <index>... [--force]` /
 * `DELETE /v1/vms/{vm}/nics/{index}`.
 *
 * @module
 */
import { InvalidInputError } from "../../provider/errors.ts";
import { validateIndex, validateVmId } from "../../provider/validate.ts";
import { UsageError } from "../args.ts";
import { defineCommand } from "../command.ts";
import { onlyQuery, queryFlag } from "../http_input.ts";
import { bool, removeResult } from "../schemas.ts";

export default defineCommand({
  name: "remove",
  usage: "vmnic remove <vm> <index>... [--force]",
  positionals: [2, -1],
  options: {
    force: {
      type: "boolean",
      help:
        "drop a NIC even when CNI DEL fails (what the plugins keep is reported)",
    },
  },
  parse(p) {
    const op = "remove";
    const vmId = p.positionals[0];
    validateVmId(op, vmId);
    const indices = p.positionals.slice(1).map((s) => {
      if (!/^\d+$/.test(s)) {
        throw new UsageError(
          `remove: index must be an integer 0–31, got ${JSON.stringify(s)}`,
          op,
        );
      }
      validateIndex(op, vmId, Number(s));
      return Number(s);
    });
    return { vmId, indices, force: p.values.force === true };
  },
  run: (i, { provider }) =>
    provider.remove(i.vmId, ...i.indices, { force: i.force }),
  human: (r) =>
    [
      r.removed.length
        ? `removed NIC ${r.removed.join(", ")} of ${r.vmId}`
        : `nothing removed from ${r.vmId}`,
      ...(r.absent.length
        ? [`no NIC ${r.absent.join(", ")} (nothing to do)`]
        : []),
      ...r.warnings.map((w) => `warning: ${w}`),
    ].join("\n"),
  http: {
    method: "DELETE",
    path: "/v1/vms/{vm}/nics/{index}",
    query: {
      force: {
        schema: bool,
        description: "drop the NIC even when CNI DEL fails",
      },
    },
    response: removeResult,
    input({ params, query }) {
      const op = "remove";
      validateVmId(op, params.vm);
      onlyQuery(op, params.vm, query, ["force"]);
      if (!/^\d+$/.test(params.index)) {
        throw new InvalidInputError(
          op,
          params.vm,
          `index must be an integer 0–31, got ${JSON.stringify(params.index)}`,
        );
      }
      validateIndex(op, params.vm, Number(params.index));
      return {
        vmId: params.vm,
        indices: [Number(params.index)],
        force: queryFlag(op, params.vm, query, "force"),
      };
    },
    request(i) {
      if (i.indices.length !== 1) {
        // One route per NIC: the CLI runs a multi-index remove in process.
        throw new RangeError("one index per request");
      }
      return {
        params: { vm: i.vmId, index: String(i.indices[0]) },
        query: i.force ? { force: "true" } : {} as Record<string, string>,
      };
    },
  },
});
