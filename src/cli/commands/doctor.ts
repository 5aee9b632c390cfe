/**
 * `vmnic doctor [--fix]`.
 *
 * @module
 */
import { resolveConfig } from "../../provider/config.ts";
import { doctor } from "../../provider/doctor.ts";
import { defineCommand } from "../command.ts";

export default defineCommand({
  name: "doctor",
  usage: "vmnic doctor [--fix]",
  positionals: [0, 0],
  options: {
    fix: {
      type: "boolean",
      help:
        "install containernetworking-plugins (Debian/Ubuntu) and create missing dirs",
    },
  },
  provider: "none",
  parse: (p) => ({ fix: p.values.fix === true }),
  async run(i, { config }) {
    const checks = await doctor(resolveConfig(config), i.fix);
    return { ok: checks.every((c) => c.ok), checks };
  },
  human: (r) =>
    r.checks.map((c) =>
      `${c.ok ? "ok  " : "FAIL"}  ${c.name.padEnd(18)} ${c.detail}${
        c.fixed ? ` [fix: ${c.fixed}]` : ""
      }`
    ).join("\n"),
  exitCode: (r) => r.ok ? 0 : 1,
});
