/**
 * `vmnic networks` / `GET /v1/networks`.
 *
 * @module
 */
import { defineCommand } from "../command.ts";
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
      ...r.networks.flatMap((n) => [
        `${n.isDefault ? "*" : " "} ${n.name.padEnd(16)} ${
          n.cniVersion.padEnd(6)
        } ${n.plugins.join(",").padEnd(24)} ${
          n.embedded ? "(embedded)" : n.source
        }`,
        `    subnets ${n.subnets.join(", ") || "-"}; gateways ${
          n.gateways.join(", ") || "-"
        }; MTU ${n.mtu ?? "-"}; STATUS ${n.status ?? "-"}${
          n.statusError ? ` (${n.statusError})` : ""
        }`,
        `    chain ${
          n.chain.map((p) =>
            `${p.type}${p.ipam ? `(${p.ipam})` : ""}${
              p.capabilities.length ? `[${p.capabilities.join(",")}]` : ""
            }`
          ).join(" -> ")
        }`,
      ]),
      ...r.errors.map((e) => `! ${e.error}`),
    ].join("\n"),
  http: {
    method: "GET",
    path: "/v1/networks",
    response: networksResult,
  },
});
