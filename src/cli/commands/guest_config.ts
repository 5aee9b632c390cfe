/**
 * `vmnic guest-config <vm> --format …`.
 *
 * @module
 */
import {
  GUEST_CONFIG_FORMATS,
  type GuestConfigFormat,
} from "../../provider/guest_config.ts";
import { validateVmId } from "../../provider/validate.ts";
import { str, UsageError } from "../args.ts";
import { defineCommand } from "../command.ts";

export default defineCommand({
  name: "guest-config",
  usage: `vmnic guest-config <vm> --format ${GUEST_CONFIG_FORMATS.join("|")}`,
  positionals: [1, 1],
  options: {
    format: {
      type: "string",
      value: "FORMAT",
      help: `one of ${GUEST_CONFIG_FORMATS.join(", ")}`,
    },
  },
  parse(p) {
    const op = "guest-config";
    validateVmId(op, p.positionals[0]);
    const format = str(p, "format");
    if (
      !format || !(GUEST_CONFIG_FORMATS as readonly string[]).includes(format)
    ) {
      throw new UsageError(
        `guest-config: --format must be one of ${
          GUEST_CONFIG_FORMATS.join(", ")
        }`,
        op,
      );
    }
    return { vmId: p.positionals[0], format: format as GuestConfigFormat };
  },
  run: (i, { provider }) => provider.guestConfig(i.vmId, i.format),
  json: (files, i) => ({ vmId: i.vmId, format: i.format, files }),
  human: (files) =>
    files.map((f) =>
      (files.length > 1 ? `# ${f.name}\n` : "") + f.content.trimEnd()
    ).join("\n\n"),
});
