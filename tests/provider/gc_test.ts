/**
 * `vmnic gc`: every recorded VM not in the active set is collected like
 * `delete`; `--dry-run` only lists; a VM another process holds the lock of
 * is skipped and reported; a netns with the prefix that no record accounts
 * for is reported and left alone unless `--include-unknown`.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { rootTest, sh } from "../support/harness.ts";
import { type Fixture, makeFixture, vethsOnBridge } from "./_fixture.ts";
import type { NicConfig } from "../../src/provider/types.ts";
import type { GcReport } from "../../src/provider/gc_orchestrator.ts";

const LOCK_HOLDER = fileURLToPath(
  new URL("./_lock_holder.ts", import.meta.url),
);

type GcOutput = GcReport & { dryRun: boolean };

/** Adds one NIC to each VM through the CLI; returns them by VM id. */
async function addVms(
  fx: Fixture,
  ids: string[],
): Promise<Map<string, NicConfig>> {
  const out = new Map<string, NicConfig>();
  for (const id of ids) {
    const [nic] = await fx.cliOk<NicConfig[]>(["add", id]);
    out.set(id, nic);
  }
  return out;
}

/** VM ids that have records. */
async function recordedVms(fx: Fixture): Promise<string[]> {
  const nics = await fx.cliOk<NicConfig[]>(["list"]);
  return [...new Set(nics.map((n) => n.vmId))].sort();
}

function ipOf(nics: Map<string, NicConfig>, id: string): string {
  return nics.get(id)!.ips[0].address;
}

rootTest(
  "gc: dry run lists, the real run collects all but the active VM",
  async () => {
    const fx = await makeFixture("gc", { octet: 212 });
    try {
      const nics = await addVms(fx, ["vm1", "vm2", "vm3"]);
      await sh("ip", "netns", "add", `${fx.prefix}orphan`);
      const allIps = [...nics.values()].map((n) => n.ips[0].address).sort();

      const dry = await fx.cliOk<GcOutput>([
        "gc",
        "--active",
        "vm1",
        "--dry-run",
      ]);
      assert.equal(dry.dryRun, true);
      assert.deepEqual(dry.candidates.sort(), ["vm2", "vm3"]);
      assert.deepEqual(dry.skipped.map((s) => s.id), ["orphan"]);
      assert.match(dry.skipped[0].reason, /no record.*--include-unknown/);
      assert.deepEqual(dry.collected, []);
      assert.deepEqual(dry.errors, []);
      // Nothing changed.
      assert.deepEqual(await fx.netns(), ["orphan", "vm1", "vm2", "vm3"]);
      assert.deepEqual(await recordedVms(fx), ["vm1", "vm2", "vm3"]);
      assert.deepEqual(await fx.leasedIps(), allIps);
      assert.equal((await vethsOnBridge(fx.bridge)).length, 3);

      const real = await fx.cliOk<GcOutput>(["gc", "--active", "vm1"]);
      assert.equal(real.dryRun, false);
      assert.deepEqual(real.collected.sort(), ["vm2", "vm3"]);
      assert.deepEqual(real.skipped.map((s) => s.id), ["orphan"]);
      assert.deepEqual(real.errors, []);
      // A netns no record accounts for is never deleted by default.
      assert.deepEqual(await fx.netns(), ["orphan", "vm1"]);
      const unknown = await fx.cliOk<GcOutput>([
        "gc",
        "--active",
        "vm1",
        "--include-unknown",
      ]);
      assert.deepEqual(unknown.collected, ["orphan"]);
      assert.match(unknown.warnings[0].warning, /without CNI DEL/);
      assert.deepEqual(await fx.netns(), ["vm1"]);
      assert.deepEqual(await recordedVms(fx), ["vm1"]);
      assert.deepEqual(await fx.leasedIps(), [ipOf(nics, "vm1")]);
      assert.equal((await vethsOnBridge(fx.bridge)).length, 1);
      // vm1 is intact.
      assert.deepEqual(await fx.cliOk(["list", "--vm", "vm1"]), [
        nics.get("vm1"),
      ]);
      const v = await fx.cli(["verify", "vm1"]);
      assert.equal(v.code, 0, v.stdout + v.stderr);

      // Nothing left to collect.
      const again = await fx.cliOk<GcOutput>(["gc", "--active", "vm1"]);
      assert.deepEqual(again.candidates, []);
    } finally {
      await fx.cleanup();
    }
  },
);

rootTest(
  "gc: a VM locked by another process is skipped and reported",
  async () => {
    const fx = await makeFixture("gl", { octet: 213 });
    let holder: Deno.ChildProcess | undefined;
    try {
      const nics = await addVms(fx, ["vm1", "vm2", "vm3"]);
      holder = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-read",
          `--allow-write=${fx.runDir}`,
          "--allow-ffi",
          "--allow-sys=uid",
          LOCK_HOLDER,
          fx.runDir,
          "vm3",
        ],
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const lines = holder.stdout.pipeThrough(new TextDecoderStream())
        .getReader();
      const { value: first } = await lines.read();
      lines.releaseLock();
      assert.equal(first?.trim(), "acquired", "the holder took vm3's lock");

      const r = await fx.cliOk<GcOutput>(["gc", "--active", "vm1"]);
      assert.deepEqual(r.collected, ["vm2"]);
      assert.deepEqual(r.skipped.map((s) => s.id), ["vm3"]);
      assert.match(r.skipped[0].reason, /lock/);
      assert.deepEqual(r.errors, []);
      // vm3 untouched.
      assert.deepEqual(await fx.netns(), ["vm1", "vm3"]);
      assert.deepEqual(await recordedVms(fx), ["vm1", "vm3"]);
      assert.deepEqual(
        await fx.leasedIps(),
        [ipOf(nics, "vm1"), ipOf(nics, "vm3")].sort(),
      );
      // verify takes the VM's lock: a VM in another process's hands is busy,
      // not broken.
      const busy = await fx.cli(["verify", "vm3", "--wait", "0"]);
      assert.equal(busy.code, 1);
      assert.equal(JSON.parse(busy.stderr).error.type, "VmBusyError");

      // Once the other process is gone, vm3 goes too.
      holder.kill("SIGTERM");
      await holder.status;
      await holder.stdout.cancel().catch(() => {});
      holder = undefined;
      assert.equal((await fx.cli(["verify", "vm3"])).code, 0);
      const later = await fx.cliOk<GcOutput>(["gc", "--active", "vm1"]);
      assert.deepEqual(later.collected, ["vm3"]);
      assert.deepEqual(await fx.netns(), ["vm1"]);
      assert.deepEqual(await recordedVms(fx), ["vm1"]);
      assert.deepEqual(await fx.leasedIps(), [ipOf(nics, "vm1")]);
    } finally {
      if (holder) {
        holder.kill("SIGKILL");
        await holder.status;
      }
      await fx.cleanup();
    }
  },
);
