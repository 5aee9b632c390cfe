/**
 * `vmnic delete <vm>... [--force]` / `DELETE /v1/vms/{vm}`.
 *
 * @module
 */
import { validateVmId } from "../../provider/validate.ts";
import { defineCommand } from "../command.ts";
import { onlyQuery, queryFlag } from "../http_input.ts";
import { bool, deleteResult } from "../schemas.ts";

export default defineCommand({
  name: "delete",
  usage: "vmnic delete <vm>... [--force]",
  positionals: [1, -1],
  options: {
    force: {
      type: "boolean",
      help: "finish the teardown even when CNI DEL fails: netns, devices, " +
        "records and lock go; what the plugins could not release is reported",
    },
  },
  parse(p) {
    for (const id of p.positionals) validateVmId("delete", id);
    return { vmIds: p.positionals, force: p.values.force === true };
  },
  run: (i, { provider, progress }) =>
    provider.delete(i.vmIds, {
      force: i.force,
      onProgress: i.vmIds.length > 10
        ? (id, done, total) => progress("delete", id, done, total)
        : undefined,
    }),
  human: (r) =>
    [
      ...r.deleted.map((id) => `deleted ${id}`),
      ...r.errors.map((e) => `FAILED ${e.vmId}: ${e.error}`),
      ...r.warnings.map((w) => `warning ${w.vmId}: ${w.warning}`),
    ].join("\n"),
  exitCode: (r) => r.errors.length ? 1 : 0,
  http: {
    method: "DELETE",
    path: "/v1/vms/{vm}",
    query: {
      force: {
        schema: bool,
        description: "finish the teardown even when CNI DEL fails",
      },
    },
    response: deleteResult,
    input({ params, query }) {
      validateVmId("delete", params.vm);
      onlyQuery("delete", params.vm, query, ["force"]);
      return {
        vmIds: [params.vm],
        force: queryFlag("delete", params.vm, query, "force"),
      };
    },
    request(i) {
      if (i.vmIds.length !== 1) throw new RangeError("one VM per request");
      return {
        params: { vm: i.vmIds[0] },
        query: i.force ? { force: "true" } : {} as Record<string, string>,
      };
    },
  },
});
