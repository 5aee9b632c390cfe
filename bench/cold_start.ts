/**
 * What a `vmnic` process pays before it does any work, from source: each
 * probe is a whole `deno run` process, alternated with an empty one in the
 * same loop, so the difference of their medians is the probe's own cost.
 * The README quotes it to explain where `vmnic add --no-daemon` spends the
 * time that the library's add does not (a warm process has paid it).
 *
 * Probes: the first timer of a process (the global `setTimeout`, and
 * `src/sys/timers.ts`'s, which vmnic uses instead), binding libc's symbols over FFI
 * (`src/sys/libc.ts`), loading the provider's modules, loading the CLI and
 * the add command, and the CLI's fast path (`src/cli/forward.ts`).
 *
 * Needs no root and no netns: `deno task bench:cold`. `BENCH_N` sets the
 * rounds (default 30, after 3 untimed).
 *
 * @module
 */
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { CLI_PERMISSIONS, REPO_ROOT } from "../tests/support/cli.ts";
import { benchIterations, median } from "./_support.ts";

const N = benchIterations(30);
const WARMUP = 3;

const src = (path: string) => pathToFileURL(join(REPO_ROOT, path)).href;

/** Each probe: its label and its script (empty: the baseline). */
const PROBES: [string, string][] = [
  ["an empty `deno run`", ""],
  [
    "the CLI's fast path (`src/cli/forward.ts`)",
    `import "${src("src/cli/forward.ts")}";`,
  ],
  [
    "the first timer (`setTimeout`) of a process",
    "clearTimeout(setTimeout(() => {}, 0));",
  ],
  [
    "the first timer of `src/sys/timers.ts` (what vmnic uses)",
    `import { after } from "${
      src("src/sys/timers.ts")
    }"; after(0, () => {}).cancel();`,
  ],
  [
    "libc's symbols bound over FFI (`libc()`)",
    `import { libc } from "${src("src/sys/libc.ts")}"; libc();`,
  ],
  [
    "the whole CLI and its add command",
    `import "${src("src/cli/run.ts")}"; import "${
      src("src/cli/commands/add.ts")
    }";`,
  ],
  [
    "the provider's modules (`src/provider/mod.ts`)",
    `import "${src("src/provider/mod.ts")}";`,
  ],
];

const dir = Deno.makeTempDirSync({ prefix: "vmnic-cold-" });
try {
  const scripts = PROBES.map(([, code], i) => {
    const path = join(dir, `probe${i}.ts`);
    Deno.writeTextFileSync(path, code + "\n");
    return path;
  });
  const samples = PROBES.map(() => [] as number[]);
  for (let round = 0; round < WARMUP + N; round++) {
    for (const [i, script] of scripts.entries()) {
      const t0 = performance.now();
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", ...CLI_PERMISSIONS, script],
        cwd: REPO_ROOT,
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).output();
      const ms = performance.now() - t0;
      if (!out.success) {
        throw new Error(
          `${PROBES[i][0]}: ${new TextDecoder().decode(out.stderr)}`,
        );
      }
      if (round >= WARMUP) samples[i].push(ms);
    }
  }
  const base = median(samples[0]);
  console.log("| a process that loads or does | p50 ms | its own cost |");
  console.log("|---|---:|---:|");
  for (const [i, [label]] of PROBES.entries()) {
    const m = median(samples[i]);
    console.log(
      `| ${label} | ${m.toFixed(1)} | ${
        i === 0 ? "(baseline)" : `+${(m - base).toFixed(1)} ms`
      } |`,
    );
  }
  console.log(
    `\n(${N} rounds after ${WARMUP} untimed, probes alternated; ${
      new Date().toISOString()
    })`,
  );
} finally {
  Deno.removeSync(dir, { recursive: true });
}
