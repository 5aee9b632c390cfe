/**
 * `vmnic recover <vm>` / `POST /v1/vms/{vm}/recover`: exit 1 when a NIC
 * could not be recovered.
 *
 * @module
 */
import { validateVmId } from "../../provider/validate.ts";
import { defineCommand } from "../command.ts";
import { bodyFields, onlyQuery } from "../http_input.ts";
import { nicTable } from "../output.ts";
import { recoverResult } from "../schemas.ts";

export default defineCommand({
  name: "recover",
  usage: "vmnic recover <vm>",
  positionals: [1, 1],
  options: {},
  details: [
    "Checks each NIC and repairs only what is missing or wrong: a TAP or",
    "redirect is re-made beside a healthy veth; a NIC whose veth is gone is",
    "rebuilt with the same id, TAP, MAC and IPs (its hooks fire). Nothing is",
    "torn down that cannot be rebuilt.",
  ].join("\n"),
  parse(p) {
    validateVmId("recover", p.positionals[0]);
    return { vmId: p.positionals[0] };
  },
  run: (i, { provider }) => provider.recover(i.vmId),
  human: (r) =>
    [
      nicTable(r.nics),
      ...r.repaired.map((x) => `NIC ${x.index}: ${x.actions.join("; ")}`),
      ...r.rebuilt.map((i) => `NIC ${i}: rebuilt`),
      ...r.problems.map((x) => `NIC ${x.index}: FAILED: ${x.error}`),
      ...r.warnings.map((w) => `warning: ${w}`),
    ].join("\n"),
  exitCode: (r) => r.problems.length ? 1 : 0,
  http: {
    method: "POST",
    path: "/v1/vms/{vm}/recover",
    response: recoverResult,
    input({ params, query, body }) {
      validateVmId("recover", params.vm);
      onlyQuery("recover", params.vm, query, []);
      bodyFields("recover", params.vm, body, []);
      return { vmId: params.vm };
    },
    request: (i) => ({ params: { vm: i.vmId }, query: {} }),
  },
});
