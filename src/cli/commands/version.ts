/**
 * `vmnic version` / `GET /v1/version` (the daemon's).
 *
 * @module
 */
import { tsHooks } from "../../../hooks/registry.ts";
import { VERSION } from "../../version.ts";
import { defineCommand } from "../command.ts";

export default defineCommand({
  name: "version",
  usage: "vmnic version",
  positionals: [0, 0],
  options: {},
  provider: "none",
  parse: () => ({}),
  run: () =>
    Promise.resolve({
      vmnic: VERSION,
      deno: Deno.version.deno,
      hooks: Object.keys(tsHooks),
    }),
  human: (v) =>
    `vmnic ${v.vmnic} (deno ${v.deno})\nhooks compiled in: ${
      v.hooks.join(", ") || "none"
    }`,
  http: {
    method: "GET",
    path: "/v1/version",
    response: {
      type: "object",
      properties: {
        vmnic: { type: "string" },
        deno: { type: "string" },
        hooks: { type: "array", items: { type: "string" } },
      },
      required: ["vmnic", "deno", "hooks"],
      additionalProperties: false,
    },
  },
});
