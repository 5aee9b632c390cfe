/**
 * The library's GC: the provider's module registered into an orchestrator
 * beside another module of a VM manager, collecting what is not active,
 * including a leftover netns file a crash left without a mount.
 */
import assert from "node:assert/strict";
import { rootTest } from "../support/harness.ts";
import { makeFixture } from "./_fixture.ts";
import {
  type GcModule,
  GcOrchestrator,
} from "../../src/provider/gc_orchestrator.ts";

rootTest(
  "registerGc: the cni module runs with the VM manager's other modules",
  async () => {
    const fx = await makeFixture("gcm", { octet: 238 });
    const p = await fx.provider();
    const stale = `/var/run/netns/${fx.prefix}stale`;
    try {
      await p.add("vm1", {});
      await p.add("vm2", {});
      // An empty file with the prefix: what an interrupted netns creation leaves.
      await Deno.writeTextFile(stale, "");

      const seen: string[][] = [];
      const disks: GcModule<string[]> = {
        name: "disks",
        snapshot: () => Promise.resolve(["vm1", "vm9"]),
        collect: (snap, active) => {
          seen.push([...active].sort());
          const doomed = snap.filter((id) => !active.has(id));
          return Promise.resolve({
            module: "disks",
            candidates: doomed,
            collected: doomed,
            skipped: [],
            errors: [],
            warnings: [],
          });
        },
      };
      const orch = new GcOrchestrator();
      p.registerGc(orch);
      orch.register(disks);
      assert.deepEqual(orch.modules, ["cni", "disks"]);

      const dry = await orch.run(["vm1"], { dryRun: true });
      assert.deepEqual(dry[0].candidates, ["stale", "vm2"]);
      assert.deepEqual(dry[0].collected, []);
      assert.deepEqual((await p.list()).map((n) => n.vmId), ["vm1", "vm2"]);

      const [cni, other] = await orch.run(["vm1"]);
      assert.deepEqual(cni.collected.sort(), ["stale", "vm2"]);
      assert.deepEqual(cni.errors, []);
      assert.deepEqual(other.collected, ["vm9"]);
      assert.deepEqual(seen.at(-1), ["vm1"]);
      await assert.rejects(Deno.stat(stale), Deno.errors.NotFound);
      assert.deepEqual((await p.list()).map((n) => n.vmId), ["vm1"]);
      assert.equal((await p.verify("vm1")).ok, true);
      assert.deepEqual(await fx.netns(), ["vm1"]);
    } finally {
      await Deno.remove(stale).catch(() => {});
      p.close();
      await fx.cleanup();
    }
  },
);
