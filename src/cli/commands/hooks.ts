/**
 * `vmnic hooks` / `GET /v1/hooks`.
 *
 * @module
 */
import { defineCommand } from "../command.ts";
import { hooksResult } from "../schemas.ts";

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
        }${h.idle ? "(idle: nothing to do)" : ""}`
      ).join("\n")
      : "no hooks",
  http: {
    method: "GET",
    path: "/v1/hooks",
    response: hooksResult,
  },
});
