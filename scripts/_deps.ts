/**
 * Caches vmnic's npm dependencies (zod) before a run moves into a network
 * namespace without network: a CLI process spawned there must not try to
 * download anything (and must print nothing but its own output).
 *
 * @module
 */

/** Runs `deno install --entrypoint` on the CLI and the library entry points. */
export async function cacheDependencies(): Promise<void> {
  const { success, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["install", "--entrypoint", "src/cli/main.ts", "mod.ts"],
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!success) {
    console.error(new TextDecoder().decode(stderr));
    throw new Error("could not cache vmnic's dependencies (deno install)");
  }
}
