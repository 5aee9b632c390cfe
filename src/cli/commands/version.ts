/**
 * `vmnic version`.
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
});
