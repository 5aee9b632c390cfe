/**
 * `vmnic guest-config <vm> --format …` /
 * `GET /v1/vms/{vm}/guest-config?format=…`.
 *
 * @module
 */
import {
  GUEST_CONFIG_FORMATS,
  type GuestConfigFormat,
} from "../../provider/guest_config.ts";
import { InvalidInputError } from "../../provider/errors.ts";
import { validateVmId } from "../../provider/validate.ts";
import { str, UsageError } from "../args.ts";
import { defineCommand } from "../command.ts";
import { onlyQuery } from "../http_input.ts";
import { guestConfigResult, oneOf } from "../schemas.ts";

function isFormat(f: string | undefined): f is GuestConfigFormat {
  return f !== undefined &&
    (GUEST_CONFIG_FORMATS as readonly string[]).includes(f);
}

const FORMATS = GUEST_CONFIG_FORMATS.join(", ");

export default defineCommand({
  name: "guest-config",
  usage: `vmnic guest-config <vm> --format ${GUEST_CONFIG_FORMATS.join("|")}`,
  positionals: [1, 1],
  options: {
    format: {
      type: "string",
      value: "FORMAT",
      help: `one of ${FORMATS}`,
    },
  },
  parse(p) {
    const op = "guest-config";
    validateVmId(op, p.positionals[0]);
    const format = str(p, "format");
    if (!isFormat(format)) {
      throw new UsageError(
        `guest-config: --format must be one of ${FORMATS}`,
        op,
      );
    }
    return { vmId: p.positionals[0], format };
  },
  async run(i, { provider }) {
    const files = await provider.guestConfig(i.vmId, i.format);
    return { vmId: i.vmId, format: i.format, files };
  },
  human: (r) =>
    r.files.map((f) =>
      (r.files.length > 1 ? `# ${f.name}\n` : "") + f.content.trimEnd()
    ).join("\n\n"),
  http: {
    method: "GET",
    path: "/v1/vms/{vm}/guest-config",
    query: {
      format: {
        schema: oneOf(...GUEST_CONFIG_FORMATS),
        description: "the guest config's format",
      },
    },
    response: guestConfigResult,
    input({ params, query }) {
      const op = "guest-config";
      validateVmId(op, params.vm);
      onlyQuery(op, params.vm, query, ["format"]);
      if (!isFormat(query.format)) {
        throw new InvalidInputError(
          op,
          params.vm,
          `query parameter "format" must be one of ${FORMATS}`,
        );
      }
      return { vmId: params.vm, format: query.format };
    },
    request: (i) => ({ params: { vm: i.vmId }, query: { format: i.format } }),
  },
});
