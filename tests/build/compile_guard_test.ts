/**
 * Guards for the single-binary build. `deno compile` needs its `denort`
 * download, which this environment cannot reach, so these tests check what
 * would break a compiled binary without compiling: every TS hook reachable
 * by static imports from the entry point, no dynamic imports, no reads of
 * files next to the sources, and a compile task with explicit permissions.
 * The real compile runs only with `VMNIC_TEST_COMPILE=1`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import { tsHooks } from "../../hooks/registry.ts";
import { run, type RunResult } from "../support/harness.ts";
import { REPO_ROOT } from "../support/cli.ts";
/** The compile target. */
const ENTRY = "src/cli/main.ts";
/** Directories whose code goes into the binary. */
const SHIPPED_DIRS = ["src", "hooks"];

/** deno.json, as far as these tests read it. */
interface DenoJson {
  version: string;
  tasks: Record<string, string>;
}

async function denoJson(): Promise<DenoJson> {
  return JSON.parse(await Deno.readTextFile(join(REPO_ROOT, "deno.json")));
}

/** Runs `deno <args>` from the repo root. */
function deno(args: string[]): Promise<RunResult> {
  return run(Deno.execPath(), args, { cwd: REPO_ROOT });
}

/** Every `.ts` file under `dir` (repo-relative), recursively, sorted. */
async function tsFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (abs: string) => {
    for await (const e of Deno.readDir(abs)) {
      const path = join(abs, e.name);
      if (e.isDirectory) await walk(path);
      else if (e.isFile && e.name.endsWith(".ts")) {
        out.push(relative(REPO_ROOT, path));
      }
    }
  };
  await walk(join(REPO_ROOT, dir));
  return out.sort();
}

/** The TS hook modules of hooks/ (what the registry must import). */
async function hookModules(): Promise<string[]> {
  return (await tsFiles("hooks")).filter((f) =>
    f !== "hooks/registry.ts" && !f.endsWith("_test.ts")
  );
}

/** The words of a deno.json task, or a failure naming the missing task. */
function taskWords(cfg: DenoJson, name: string): string[] {
  const task = cfg.tasks[name];
  assert.equal(typeof task, "string", `deno.json has a "${name}" task`);
  return task.trim().split(/\s+/);
}

/** The `--allow-*` flags among `words`. */
function allowFlags(words: string[]): string[] {
  return words.filter((w) => w.startsWith("--allow-")).sort();
}

/**
 * Source text with comments blanked out (strings and template literals
 * kept), so a pattern found in the rest is code, not prose.
 */
function stripComments(src: string): string {
  let out = "";
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    const next = src[i + 1];
    if (c === "/" && next === "/") {
      while (i < src.length && src[i] !== "\n") i++;
    } else if (c === "/" && next === "*") {
      const end = src.indexOf("*/", i + 2);
      const stop = end < 0 ? src.length : end + 2;
      out += src.slice(i, stop).replace(/[^\n]/g, " ");
      i = stop;
    } else if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      while (j < src.length && src[j] !== c) j += src[j] === "\\" ? 2 : 1;
      out += src.slice(i, j + 1);
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** A dynamic `import(` call in code. */
const DYNAMIC_IMPORT = /(?<![\w$.])import\s*\(/;
/**
 * A dynamic import whose specifier is one string literal (no template
 * substitution): `deno compile` sees and bundles it.
 */
const LITERAL_IMPORT =
  /(?<![\w$.])import\s*\(\s*(?:"[^"]+"|'[^']+'|`[^`$]+`)\s*\)/g;
/** What resolves paths next to a module: the binary's virtual fs. */
const MODULE_LOCATION =
  /import\.meta\s*\.\s*(url|dirname|filename|resolve)\b|Deno\.mainModule\b/;

/** `file:line: text` of each code line of `files` that matches `re`. */
async function codeMatches(files: string[], re: RegExp): Promise<string[]> {
  const hits: string[] = [];
  for (const f of files) {
    const lines = stripComments(
      await Deno.readTextFile(join(REPO_ROOT, f)),
    ).split("\n");
    lines.forEach((line, n) => {
      if (re.test(line)) hits.push(`${f}:${n + 1}: ${line.trim()}`);
    });
  }
  return hits;
}

async function shippedFiles(): Promise<string[]> {
  return (await Promise.all(SHIPPED_DIRS.map(tsFiles))).flat();
}

Deno.test("the source scanners see code and ignore comments", () => {
  const code = [
    "// import('./x.ts') in a line comment",
    "/* import.meta.url in a block comment */",
    'const s = "// not a comment"; await import(name);',
    "const u = new URL('./x', import.meta.url);",
  ].join("\n");
  const stripped = stripComments(code).split("\n");
  assert.equal(stripped.length, 4, "line numbers are kept");
  assert.equal(DYNAMIC_IMPORT.test(stripped[0]), false);
  assert.equal(
    'load: () => import("./commands/add.ts"),'.match(LITERAL_IMPORT)?.length,
    1,
  );
  assert.equal("await import(`./c/${name}.ts`)".match(LITERAL_IMPORT), null);
  assert.equal("await import(name)".match(LITERAL_IMPORT), null);
  assert.equal(MODULE_LOCATION.test(stripped[1]), false);
  assert.equal(DYNAMIC_IMPORT.test(stripped[2]), true);
  assert.equal(MODULE_LOCATION.test(stripped[3]), true);
  assert.equal(DYNAMIC_IMPORT.test('import x from "./x.ts";'), false);
  assert.equal(MODULE_LOCATION.test("if (import.meta.main) run();"), false);
});

/** The `--include` paths of the compile task (files or directories). */
async function compileIncludes(): Promise<string[]> {
  const words = taskWords(await denoJson(), "compile");
  const out: string[] = [];
  words.forEach((w, i) => {
    if (w === "--include") out.push(words[i + 1]);
    else if (w.startsWith("--include=")) out.push(w.slice("--include=".length));
  });
  return out;
}

/** The `.ts` modules an `--include` path stands for. */
async function includedModules(path: string): Promise<string[]> {
  const info = await Deno.stat(join(REPO_ROOT, path));
  return info.isDirectory
    ? (await tsFiles(path)).filter((f) => !f.endsWith("_test.ts"))
    : [path];
}

/**
 * The modules `deno compile` bundles: from the entry and from every
 * `--include` of the compile task, static code imports and dynamic
 * imports whose specifier it could resolve (string literals). Type-only
 * imports put nothing into the binary.
 */
async function bundledGraph(): Promise<Set<string>> {
  const roots = [ENTRY];
  for (const inc of await compileIncludes()) {
    roots.push(...await includedModules(inc));
  }
  const reached = new Set<string>();
  for (const root of roots) {
    for (const m of await graphFrom(root)) reached.add(m);
  }
  return reached;
}

async function graphFrom(root: string): Promise<Set<string>> {
  const r = await deno(["info", "--json", root]);
  assert.equal(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout) as {
    roots: string[];
    modules: {
      specifier: string;
      error?: string;
      dependencies?: {
        specifier: string;
        isDynamic?: boolean;
        code?: { specifier: string };
      }[];
    }[];
  };
  const bySpecifier = new Map(info.modules.map((m) => [m.specifier, m]));
  const reached = new Set<string>();
  const queue = [...info.roots];
  while (queue.length) {
    const spec = queue.pop()!;
    if (reached.has(spec)) continue;
    reached.add(spec);
    const mod = bySpecifier.get(spec);
    assert.equal(mod?.error, undefined, `${spec}: ${mod?.error}`);
    for (const dep of mod?.dependencies ?? []) {
      if (dep.code) queue.push(dep.code.specifier);
    }
  }
  return reached;
}

Deno.test("every TS hook and every command is in the graph the binary bundles", async () => {
  const reached = await bundledGraph();
  const hooks = await hookModules();
  assert.ok(hooks.length >= 2, `hooks/ holds the example hooks: ${hooks}`);
  const commands = await tsFiles("src/cli/commands");
  assert.ok(commands.length >= 15, `the CLI's commands: ${commands}`);
  const missing = [...hooks, "hooks/registry.ts", ...commands].filter((f) =>
    !reached.has(pathToFileURL(join(REPO_ROOT, f)).href)
  );
  assert.deepEqual(
    missing,
    [],
    "not bundled from " + ENTRY +
      " (hooks: run `deno task hooks:gen`; commands: list them in src/cli/table.ts)",
  );
});

Deno.test("every dynamic import() in src/ or hooks/ is bundled: a string literal, or an on-demand load of a module the compile task includes", async () => {
  const files = await shippedFiles();
  assert.ok(files.includes(ENTRY), "the scan covers the entry point");
  const dynamic = await codeMatches(files, DYNAMIC_IMPORT);
  assert.ok(
    dynamic.length > 0,
    "the CLI loads its commands lazily (table.ts): the scan must see them",
  );
  // The only non-literal import()s: the one-line onDemand helpers.
  assert.deepEqual(
    dynamic.filter((hit) => {
      const literal = hit.match(LITERAL_IMPORT)?.length ?? 0;
      const all = hit.match(new RegExp(DYNAMIC_IMPORT.source, "g"))?.length ??
        0;
      return literal !== all && !/return import\(specifier\);$/.test(hit);
    }),
    [],
    "a compiled binary can only import what `deno compile` could see: " +
      'a string-literal specifier, or onDemand("<literal>") of an --include\'d module',
  );
  // Every onDemand("...") target is a module the compile task includes.
  const included = new Set<string>();
  for (const inc of await compileIncludes()) {
    for (const m of await includedModules(inc)) included.add(m);
  }
  const calls = await codeMatches(files, /onDemand(<[^>]*>)?\(\s*["'`]/);
  assert.ok(calls.length >= 20, `the on-demand loads are seen: ${calls}`);
  const missing: string[] = [];
  for (const hit of calls) {
    const [file] = hit.split(":");
    for (const m of hit.matchAll(/onDemand(?:<[^>]*>)?\(\s*"([^"]+)"/g)) {
      const target = relative(
        REPO_ROOT,
        join(REPO_ROOT, file, "..", m[1]),
      );
      if (!included.has(target)) missing.push(`${hit} -> ${target}`);
    }
  }
  // Calls whose specifier sits on the next line (deno fmt wraps them).
  for (const f of files) {
    const text = stripComments(await Deno.readTextFile(join(REPO_ROOT, f)));
    for (const m of text.matchAll(/onDemand<[^>]*>\(\s*\n\s*"([^"]+)"/g)) {
      const target = relative(REPO_ROOT, join(REPO_ROOT, f, "..", m[1]));
      if (!included.has(target)) missing.push(`${f} -> ${target}`);
    }
  }
  assert.deepEqual(
    missing,
    [],
    "onDemand loads a module the compile task does not --include",
  );
});

Deno.test("the lazy command loaders load only their own command", async () => {
  // `vmnic version` must not pull in the provider (start-up time): its
  // module graph, from main.ts's static imports plus its own command.
  const { COMMANDS } = await import("../../src/cli/table.ts");
  for (const [name, entry] of Object.entries(COMMANDS)) {
    const mod = await entry.load();
    assert.equal(mod.default.name, name, `table.ts: ${name} loads ${name}`);
  }
});

Deno.test("no file lookups next to the sources in src/ or hooks/ (import.meta.url & co)", async () => {
  assert.deepEqual(
    await codeMatches(await shippedFiles(), MODULE_LOCATION),
    [],
    "in a compiled binary these point into its virtual file system",
  );
});

Deno.test("the compile task: explicit permissions, dist/vmnic from src/cli/main.ts", async () => {
  const cfg = await denoJson();
  const words = taskWords(cfg, "compile");
  assert.deepEqual(words.slice(0, 2), ["deno", "compile"]);
  for (const forbidden of ["-A", "--allow-all"]) {
    assert.ok(!words.includes(forbidden), `no ${forbidden}`);
  }
  assert.ok(
    !words.some((w) => /^-[a-zA-Z]*A[a-zA-Z]*$/.test(w)),
    "no -A in combined short flags",
  );
  const out = words.indexOf("--output");
  const output = out >= 0
    ? words[out + 1]
    : words.find((w) => w.startsWith("--output="))?.slice("--output=".length);
  assert.equal(output, "dist/vmnic");
  assert.equal(words.at(-1), ENTRY, "the entry point is the compile target");
  assert.ok(words.includes("--no-prompt"), "a binary never prompts");
  const allows = allowFlags(words);
  for (
    const needed of ["ffi", "read", "write", "run", "env", "sys"]
  ) {
    assert.ok(
      allows.some((a) =>
        a === `--allow-${needed}` || a.startsWith(`--allow-${needed}=`)
      ),
      `--allow-${needed} in ${allows}`,
    );
  }
  assert.deepEqual(
    allows,
    allowFlags(taskWords(cfg, "vmnic")),
    "the binary gets exactly the permissions of `deno task vmnic`",
  );
});

Deno.test("vmnic version --json (from source) lists the registry's hooks", async () => {
  const cfg = await denoJson();
  const words = taskWords(cfg, "vmnic");
  const r = await deno([
    "run",
    ...allowFlags(words),
    ENTRY,
    "version",
    "--json",
  ]);
  assert.equal(r.code, 0, r.stderr);
  const v = JSON.parse(r.stdout);
  assert.equal(v.vmnic, cfg.version, "vmnic's version is deno.json's");
  assert.equal(v.deno, Deno.version.deno);
  assert.deepEqual(v.hooks, Object.keys(tsHooks));
  assert.deepEqual(
    [...v.hooks].sort(),
    (await hookModules()).map((f) => f.slice("hooks/".length)).sort(),
    "every hook module of hooks/ is compiled in",
  );
});

const COMPILE = Deno.env.get("VMNIC_TEST_COMPILE") === "1";

Deno.test({
  name: COMPILE
    ? "deno task compile builds dist/vmnic, which runs version, --help and hooks"
    : "deno task compile builds dist/vmnic (ignored: the denort download is not reachable here; set VMNIC_TEST_COMPILE=1 to run)",
  ignore: !COMPILE,
  async fn() {
    const words = taskWords(await denoJson(), "compile");
    const built = await deno(words.slice(1));
    assert.equal(built.code, 0, built.stderr);
    const bin = join(REPO_ROOT, "dist/vmnic");
    const exe = async (...args: string[]) => {
      const out = await new Deno.Command(bin, {
        args,
        cwd: "/",
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const dec = new TextDecoder();
      return {
        code: out.code,
        stdout: dec.decode(out.stdout),
        stderr: dec.decode(out.stderr),
      };
    };

    const version = await exe("version");
    assert.equal(version.code, 0, version.stderr);
    assert.match(version.stdout, /^vmnic \d+\.\d+\.\d+ \(deno /);
    for (const name of Object.keys(tsHooks)) {
      assert.ok(version.stdout.includes(name), `${name} compiled in`);
    }

    const help = await exe("--help");
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /Usage: vmnic <command>/);

    // The bundled hooks load and run from inside the binary.
    const hooksDir = await Deno.makeTempDir({ prefix: "vmnict-compile-" });
    try {
      const listed = await exe(
        "hooks",
        "--json",
        `--hooks-dir=${join(hooksDir, "none")}`,
      );
      assert.equal(listed.code, 0, listed.stderr);
      assert.deepEqual(
        JSON.parse(listed.stdout).map((h: { name: string }) => h.name),
        Object.keys(tsHooks).sort(),
      );
    } finally {
      await Deno.remove(hooksDir, { recursive: true });
    }
  },
});
