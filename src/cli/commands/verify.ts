/**
 * `vmnic verify <vm> [--skip-check]` / `POST /v1/vms/{vm}/verify`: exit 1
 * when something is wrong.
 *
 * @module
 */
import { validateVmId } from "../../provider/validate.ts";
import { defineCommand } from "../command.ts";
import { bodyFields, boolField, onlyQuery } from "../http_input.ts";
import { bool, obj, verifyResult } from "../schemas.ts";

export default defineCommand({
  name: "verify",
  usage: "vmnic verify <vm> [--skip-check]",
  positionals: [1, 1],
  options: {
    "skip-check": {
      type: "boolean",
      help: "do not run CNI CHECK (only the kernel is looked at)",
    },
  },
  parse(p) {
    validateVmId("verify", p.positionals[0]);
    return { vmId: p.positionals[0], check: p.values["skip-check"] !== true };
  },
  run: (i, { provider }) => provider.verify(i.vmId, { check: i.check }),
  human: (v) =>
    v.ok
      ? `${v.vmId}: ok (${v.nics.length} NIC(s)${
        v.quiesced ? ", quiesced" : ""
      })`
      : `${v.vmId}: BROKEN\n  ${v.problems.join("\n  ")}`,
  exitCode: (v) => v.ok ? 0 : 1,
  http: {
    method: "POST",
    path: "/v1/vms/{vm}/verify",
    body: obj({ skipCheck: bool }, []),
    response: verifyResult,
    input({ params, query, body }) {
      validateVmId("verify", params.vm);
      onlyQuery("verify", params.vm, query, []);
      const f = bodyFields("verify", params.vm, body, ["skipCheck"]);
      return {
        vmId: params.vm,
        check: boolField("verify", params.vm, f, "skipCheck") !== true,
      };
    },
    request: (i) => ({
      params: { vm: i.vmId },
      query: {},
      body: i.check ? {} : { skipCheck: true },
    }),
  },
});
