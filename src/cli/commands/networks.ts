/**
 * `vmnic networks`.
 *
 * @module
 */
import { defineCommand } from "../command.ts";

export default defineCommand({
  name: "networks",
  usage: "vmnic networks",
  positionals: [0, 0],
  options: {},
  parse: () => ({}),
  run: (_i, { provider }) => provider.networks(),
  human: (r) =>
    [
      ...r.networks.map((n) =>
        `${n.isDefault ? "*" : " "} ${n.name.padEnd(16)} ${
          n.cniVersion.padEnd(6)
        } ${n.plugins.join(",").padEnd(24)} ${
          n.embedded ? "(embedded)" : n.source
        }`
      ),
      ...r.errors.map((e) => `! ${e.error}`),
    ].join("\n"),
});
