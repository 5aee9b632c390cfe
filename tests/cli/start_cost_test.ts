/**
 * What a CLI process that does the work itself (`--no-daemon`) must not pay
 * for: Deno's Node timers, whose first use costs it about 10 ms
 * (`deno task bench:cold`). The add and delete run with a preload that
 * reports any use of the global `setTimeout` or `setInterval`.
 */
import assert from "node:assert/strict";
import { rootTest, run } from "../support/harness.ts";
import { makeFixture } from "../provider/_fixture.ts";
import { CLI_MAIN, CLI_PERMISSIONS, REPO_ROOT } from "../support/cli.ts";
import { NODE_TIMER_USED } from "../support/node_timer_trap.ts";

const TRAP = new URL("../support/node_timer_trap.ts", import.meta.url)
  .pathname;

rootTest("a local add and delete never start Deno's Node timers", async () => {
  const fx = await makeFixture("nt", { octet: 243 });
  try {
    const vmnic = (args: string[]) =>
      run(Deno.execPath(), [
        "run",
        "--preload",
        TRAP,
        ...CLI_PERMISSIONS,
        CLI_MAIN,
        ...fx.flags,
        "--no-daemon",
        ...args,
      ], { cwd: REPO_ROOT });
    // The trap itself works: a process that does use setTimeout is named.
    const probeFile = `${fx.dir}/probe.ts`;
    await Deno.writeTextFile(probeFile, "setTimeout(() => {}, 0);\n");
    const probe = await run(Deno.execPath(), [
      "run",
      "--no-config",
      "--preload",
      TRAP,
      probeFile,
    ]);
    assert.match(probe.stderr, new RegExp(NODE_TIMER_USED));

    const add = await vmnic(["add", "nt1", "--json"]);
    assert.equal(add.code, 0, add.stderr);
    assert.equal(JSON.parse(add.stdout)[0].vmId, "nt1");
    const del = await vmnic(["delete", "nt1"]);
    assert.equal(del.code, 0, del.stderr);
    for (const r of [add, del]) {
      assert.doesNotMatch(r.stderr, new RegExp(NODE_TIMER_USED));
    }
    assert.deepEqual(await fx.netns(), []);
  } finally {
    await fx.cleanup();
  }
});
