/**
 * `vmnic quiesce <vm>` / `POST /v1/vms/{vm}/quiesce`.
 *
 * @module
 */
import { validateVmId } from "../../provider/validate.ts";
import { defineCommand } from "../command.ts";
import { bodyFields, onlyQuery } from "../http_input.ts";
import { quiesceResult } from "../schemas.ts";

export default defineCommand({
  name: "quiesce",
  usage: "vmnic quiesce <vm>",
  positionals: [1, 1],
  options: {},
  parse(p) {
    validateVmId("quiesce", p.positionals[0]);
    return { vmId: p.positionals[0] };
  },
  async run(i, { provider }) {
    const nics = await provider.quiesce(i.vmId, true);
    return {
      vmId: i.vmId,
      state: "quiesced" as const,
      nics: nics.map((n) => n.ifName),
    };
  },
  human: (r) => `${r.vmId}: ${r.nics.join(", ") || "no NICs"} down`,
  http: {
    method: "POST",
    path: "/v1/vms/{vm}/quiesce",
    response: quiesceResult,
    input({ params, query, body }) {
      validateVmId("quiesce", params.vm);
      onlyQuery("quiesce", params.vm, query, []);
      bodyFields("quiesce", params.vm, body, []);
      return { vmId: params.vm };
    },
    request: (i) => ({ params: { vm: i.vmId }, query: {} }),
  },
});
