import assert from "node:assert/strict";
import { tsHooks } from "../../hooks/registry.ts";
import { HookRunner } from "../../src/hooks/mod.ts";
import {
  hookModuleFiles,
  HOOKS_DIR,
  REGISTRY_FILE,
  renderRegistry,
} from "../../scripts/gen_hook_registry.ts";

const REGEN =
  "run: deno run --allow-read=hooks --allow-write=hooks/registry.ts scripts/gen_hook_registry.ts";

Deno.test("every hook module in hooks/ is in the registry, and nothing else", () => {
  const files = hookModuleFiles();
  assert.ok(files.includes("audit_log.ts") && files.includes("deny_policy.ts"));
  assert.deepEqual(Object.keys(tsHooks), files, `registry is stale; ${REGEN}`);
});

Deno.test("hooks/registry.ts is exactly what the generator writes", async () => {
  const current = await Deno.readTextFile(new URL(REGISTRY_FILE, HOOKS_DIR));
  assert.equal(current, renderRegistry(hookModuleFiles()), `${REGEN}`);
});

Deno.test("every registered hook is a valid TsHook", async () => {
  const runner = new HookRunner({ hooksDir: null, tsHooks });
  assert.deepEqual(
    (await runner.list()).map((h) => h.name),
    Object.keys(tsHooks),
  );
});

Deno.test("the generator picks hook modules only and names them safely", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vmnict-hooks-" });
  try {
    for (
      const f of [
        "b_hook.ts",
        "10-a.ts",
        "registry.ts",
        "b_hook_test.ts",
        ".hidden.ts",
        "notes.md",
        "types.d.ts",
      ]
    ) {
      await Deno.writeTextFile(`${dir}/${f}`, "");
    }
    await Deno.mkdir(`${dir}/sub.ts`);
    const files = hookModuleFiles(new URL(`file://${dir}/`));
    assert.deepEqual(files, ["10-a.ts", "b_hook.ts"]);
    const src = renderRegistry(files);
    assert.match(src, /import hook10A from "\.\/10-a\.ts";/);
    assert.match(src, /"b_hook\.ts": hookBHook,/);
    assert.match(renderRegistry([]), /tsHooks: Record<string, TsHook> = \{\};/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
