/**
 * `vmnic networks` / `GET /v1/networks`.
 *
 * @module
 */
import { defineCommand } from "../command.ts";
import { onlyQuery } from "../http_input.ts";
import { networksResult } from "../schemas.ts";

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
  http: {
    method: "GET",
    path: "/v1/networks",
    response: networksResult,
    input({ query }) {
      onlyQuery("networks", "*", query, []);
      return {};
    },
    request: () => ({ params: {}, query: {} }),
  },
});
