/**
 * The `vmnic` command (the `deno compile` target). When `vmnic serve`
 * answers on its socket and the command is one it runs, the command line
 * goes to it whole and this process prints its answer: the process loads
 * one small module (`forward.ts`) besides this one. Otherwise, and when the
 * daemon says so, the whole CLI (`run.ts`) runs here (docs/cli.md).
 *
 * @module
 */
import { forward } from "./forward.ts";

/**
 * `import(specifier)`, relative to this module: a parameter, so `deno run`
 * does not walk the CLI's module graph before the daemon had its chance;
 * `deno compile` bundles it by the compile task's `--include`.
 */
function onDemand<T>(specifier: string): Promise<T> {
  return import(specifier);
}

if (import.meta.main) {
  const answered = await forward(Deno.args);
  if (answered !== null) Deno.exit(answered);
  const { main } = await onDemand<typeof import("./run.ts")>("./run.ts");
  Deno.exit(await main(Deno.args));
}
