/**
 * Caches vmnic's npm dependencies (zod) before a run moves into a network
 * namespace without network: a CLI process spawned there must not try to
 * download anything (and must print nothing but its own output).
 *
 * @module
 */

const ROOT = new URL("..", import.meta.url).pathname;

/**
 * Resolves and caches everything the CLI and the library load. A
 * lockfile-only install (which `deno task` does first) caches the tarballs
 * but not the npm registry metadata, which Deno then fetches whenever npm
 * code first runs; so packages whose metadata is missing are reloaded.
 */
export async function cacheDependencies(): Promise<void> {
  const entry = ["--entrypoint", "src/cli/main.ts", "mod.ts"];
  const missing = await packagesWithoutMetadata();
  const reload = missing.length
    ? [`--reload=${missing.map((p) => `npm:${p}`).join(",")}`]
    : [];
  await deno(["install", ...reload, ...entry]);
}

/** npm packages of deno.lock whose registry metadata is not cached. */
async function packagesWithoutMetadata(): Promise<string[]> {
  const lock = JSON.parse(await Deno.readTextFile(`${ROOT}deno.lock`));
  const names = Object.keys(lock.npm ?? {}).map((k) =>
    k.slice(0, k.lastIndexOf("@"))
  );
  const { npmCache } = JSON.parse(await deno(["info", "--json"]));
  const out: string[] = [];
  for (const name of names) {
    try {
      await Deno.stat(`${npmCache}/registry.npmjs.org/${name}/registry.json`);
    } catch {
      out.push(name);
    }
  }
  return out;
}

async function deno(args: string[]): Promise<string> {
  const { success, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!success) {
    console.error(new TextDecoder().decode(stderr));
    throw new Error(`could not cache vmnic's dependencies (deno ${args[0]})`);
  }
  return new TextDecoder().decode(stdout);
}
