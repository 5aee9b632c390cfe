/**
 * `vmnic unquiesce <vm>` / `POST /v1/vms/{vm}/unquiesce`.
 *
 * @module
 */
import { validateVmId } from "../../provider/validate.ts";
import { defineCommand } from "../command.ts";
import { bodyFields, onlyQuery } from "../http_input.ts";
import { quiesceResult } from "../schemas.ts";

export default defineCommand({
  name: "unquiesce",
  usage: "vmnic unquiesce <vm>",
  positionals: [1, 1],
  options: {},
  parse(p) {
    validateVmId("unquiesce", p.positionals[0]);
    return { vmId: p.positionals[0] };
  },
  async run(i, { provider }) {
    const nics = await provider.quiesce(i.vmId, false);
    return {
      vmId: i.vmId,
      state: "running" as const,
      nics: nics.map((n) => n.ifName),
    };
  },
  human: (r) => `${r.vmId}: ${r.nics.join(", ") || "no NICs"} up`,
  http: {
    method: "POST",
    path: "/v1/vms/{vm}/unquiesce",
    response: quiesceResult,
    input({ params, query, body }) {
      validateVmId("unquiesce", params.vm);
      onlyQuery("unquiesce", params.vm, query, []);
      bodyFields("unquiesce", params.vm, body, []);
      return { vmId: params.vm };
    },
    request: (i) => ({ params: { vm: i.vmId }, query: {} }),
  },
});
