/**
 * Example hook: vetoes adding a NIC to a network for VMs a policy denies.
 *
 * The policy is the JSON file named by `VMNIC_DENY_POLICY_FILE` (nothing is
 * denied when that is unset), read at every run:
 *
 * ```json
 * { "deny": { "prod": ["test-*", "scratch"], "*": ["quarantined-?"] } }
 * ```
 *
 * Keys are network names (`"*"`: every network); values are VM ids or
 * globs (`*` any run of characters, `?` one character). A policy file that
 * is missing or malformed fails the hook, which vetoes the add (fail closed).
 * (It read `VMNIC_POLICY_FILE` before: that variable names the TAP policy
 * file, docs/policy.md, which has no "deny", so every add was vetoed.)
 *
 * @module
 */
import { defineHook } from "../src/hooks/types.ts";

/** The policy file's shape. */
interface Policy {
  deny: Record<string, string[]>;
}

export default defineHook({
  events: ["beforeAdd"],
  // Without a policy, it has nothing to do.
  active: () => Boolean(Deno.env.get("VMNIC_DENY_POLICY_FILE")),
  async run(ctx) {
    const path = Deno.env.get("VMNIC_DENY_POLICY_FILE");
    if (!path) return;
    const policy = parsePolicy(path, await Deno.readTextFile(path));
    const network = ctx.network ?? "";
    for (const key of [network, "*"]) {
      for (const pattern of policy.deny[key] ?? []) {
        if (globMatch(pattern, ctx.vmId)) {
          throw new Error(
            `VM ${ctx.vmId} may not join network ${
              JSON.stringify(network)
            }: denied by ${JSON.stringify(pattern)} under ${
              JSON.stringify(key)
            } in ${path}`,
          );
        }
      }
    }
  },
});

function parsePolicy(path: string, text: string): Policy {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new Error(`policy ${path} is not valid JSON: ${err}`);
  }
  const deny = (data as { deny?: unknown })?.deny;
  const valid = typeof data === "object" && data !== null &&
    typeof deny === "object" && deny !== null && !Array.isArray(deny) &&
    Object.values(deny).every((list) =>
      Array.isArray(list) && list.every((p) => typeof p === "string")
    );
  if (!valid) {
    throw new Error(
      `policy ${path} must look like {"deny": {"<network>": ["<vm id or glob>", ...]}}`,
    );
  }
  return data as Policy;
}

/** `*` matches any run of characters, `?` one; everything else literally. */
function globMatch(pattern: string, value: string): boolean {
  const re = pattern.replace(
    /[.+^${}()|[\]\\*?]/g,
    (c) => c === "*" ? ".*" : c === "?" ? "." : `\\${c}`,
  );
  return new RegExp(`^${re}$`, "s").test(value);
}
