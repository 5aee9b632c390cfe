/**
 * Where the CLI is and how tests start it: the same entry point and
 * permissions as deno.json's `vmnic` task, run from the repository root so
 * deno.json (imports, lockfile) applies.
 *
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root. */
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
/** The CLI entry point. */
export const CLI_MAIN = join(REPO_ROOT, "src/cli/main.ts");
/** The permissions the CLI runs with (deno.json's `vmnic` task). */
export const CLI_PERMISSIONS = [
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-run",
  "--allow-env",
  "--allow-sys=uid",
  // The daemon's Unix socket (`--socket` may put it anywhere).
  "--allow-net",
];
/** The Debian CNI plugins. */
export const SYSTEM_CNI_BIN = "/usr/lib/cni";
