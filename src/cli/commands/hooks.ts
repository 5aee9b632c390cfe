/**
 * `vmnic hooks`.
 *
 * @module
 */
import { defineCommand } from "../command.ts";

export default defineCommand({
  name: "hooks",
  usage: "vmnic hooks",
  positionals: [0, 0],
  options: {},
  parse: () => ({}),
  run: (_i, { provider }) => provider.hooks(),
  human: (hooks) =>
    hooks.length
      ? hooks.map((h) =>
        `${h.name.padEnd(24)} ${h.kind.padEnd(4)} ${h.events.join(",")} ${
          h.path ?? ""
        }`
      ).join("\n")
      : "no hooks",
});
