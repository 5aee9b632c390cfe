/**
 * What the watcher must never do: act on a VM being deleted (a delete in
 * progress, or one a crash cut short), fight an operation holding a VM's
 * lock (it waits and retries), or take vmnic's own changes for breakage.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { netnsNames, rootTest, sh } from "../support/harness.ts";
import {
  isQuiesced,
  REACTION_BOUND_MS,
  sleep,
  TEST_SETTLE_MS,
  waitFor,
  withWatchEnv,
} from "./_support.ts";

const QUIET_MS = TEST_SETTLE_MS * 4 + 1_500;
const REPAIR_BOUND_MS = 15_000;
const ALL_REPAIR = {
  carrier: "repair",
  netns: "repair",
  host: "repair",
} as const;
const LOCK_HOLDER = fileURLToPath(
  new URL("../provider/_lock_holder.ts", import.meta.url),
);

rootTest(
  "watcher: a VM being deleted (delete in progress) is never repaired",
  async () => {
    const paused = Promise.withResolvers<void>();
    const go = Promise.withResolvers<void>();
    await withWatchEnv("wd1", {
      octet: 180,
      watch: ALL_REPAIR,
      open: {
        fault: async (point) => {
          if (point !== "delete:marked") return;
          paused.resolve();
          await go.promise;
        },
      },
      before: async (p) => void await p.add("vm1"),
    }, async ({ fx, provider, watchEvents, watcher }) => {
      const deleting = provider.delete(["vm1"]);
      try {
        await paused.promise;
        // While the delete holds the VM, its netns goes by hand.
        await sh("ip", "netns", "del", fx.prefix + "vm1");
        await sleep(QUIET_MS);
        assert.deepEqual(await watchEvents(), []);
        assert.ok(watcher.counters.busy > 0, "the watcher met a busy VM");
      } finally {
        go.resolve();
      }
      const out = await deleting;
      assert.deepEqual(out.deleted, ["vm1"], JSON.stringify(out));
      await sleep(QUIET_MS);
      assert.deepEqual(await watchEvents(), []);
      assert.deepEqual(await provider.vms(), []);
      assert.ok(!(await netnsNames()).includes(fx.prefix + "vm1"));
      assert.equal(watcher.status().vms, 0);
    });
  },
);

rootTest(
  "watcher: a delete a crash cut short: the VM is left alone",
  async () => {
    await withWatchEnv("wd2", {
      octet: 181,
      watch: ALL_REPAIR,
      open: {
        fault: (point) => {
          if (point === "delete:marked") throw new Error("cut short");
        },
      },
      before: async (p) => void await p.add("vm1"),
    }, async ({ fx, provider, attach, detach, watchEvents, watcher }) => {
      const fd = attach("vm1", "tap0");
      await assert.rejects(
        provider.delete(["vm1"]).then((r) => {
          if (r.errors.length) throw new Error(r.errors[0].error);
        }),
      );
      assert.equal((await provider.vms())[0].deleting, true);
      // Its hypervisor stops, its netns goes by hand.
      detach(fd);
      await sh("ip", "netns", "del", fx.prefix + "vm1");
      await sleep(QUIET_MS);
      assert.deepEqual(await watchEvents(), []);
      assert.ok(watcher.counters.skippedDeleting > 0);
      assert.equal(await isQuiesced(provider, "vm1"), false);
      assert.ok(!(await netnsNames()).includes(fx.prefix + "vm1"));
    });
  },
);

rootTest(
  "watcher: a busy VM (its lock held by another process) is retried, not fought",
  async () => {
    await withWatchEnv("wd3", {
      octet: 182,
      watch: ALL_REPAIR,
      before: async (p) => void await p.add("vm1"),
    }, async ({ fx, provider, watchEvents, watcher }) => {
      const holder = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-read",
          `--allow-write=${fx.runDir}`,
          "--allow-ffi",
          "--allow-sys=uid",
          LOCK_HOLDER,
          fx.runDir,
          "vm1",
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "null",
      }).spawn();
      const reader = holder.stdout.pipeThrough(new TextDecoderStream())
        .getReader();
      try {
        assert.equal((await reader.read()).value?.trim(), "acquired");
        await sh("ip", "netns", "del", fx.prefix + "vm1");
        await sleep(QUIET_MS);
        assert.deepEqual(await watchEvents(), []);
        assert.ok(watcher.counters.busy > 0);
      } finally {
        Deno.kill(holder.pid, "SIGKILL");
        await reader.cancel().catch(() => {});
        await holder.status;
      }
      const { value: events } = await waitFor("the repair", async () => {
        const es = await watchEvents();
        return es.some((e) => e.op === "watch:repair") ? es : undefined;
      }, REPAIR_BOUND_MS);
      assert.deepEqual(events.map((e) => [e.op, e.outcome]), [
        ["watch:report", "failed"],
        ["watch:repair", "ok"],
      ]);
      const v = await provider.verify("vm1");
      assert.equal(v.ok, true, v.problems.join("; "));
    });
  },
);

rootTest(
  "watcher: vmnic's own operations are not taken for breakage",
  async () => {
    await withWatchEnv("wd4", {
      octet: 183,
      watch: ALL_REPAIR,
      before: async (p) => {
        await p.add("vm1");
        await p.add("vm2");
      },
    }, async ({ provider, attach, detach, watchEvents, watcher }) => {
      const fd = attach("vm1", "tap0");
      await provider.add("vm1", {}, { index: 1 });
      await provider.remove("vm1", 1);
      await provider.recover("vm1");
      await provider.quiesce("vm1");
      await provider.quiesce("vm1", false);
      await provider.delete(["vm2"]);
      await provider.add("vm3");
      await sleep(QUIET_MS);
      assert.deepEqual(await watchEvents(), []);
      assert.equal(watcher.status().vms, 2); // vm1 and vm3
      // And it still reacts afterwards.
      detach(fd);
      await waitFor(
        "vm1 quiesced",
        () => isQuiesced(provider, "vm1"),
        REACTION_BOUND_MS,
      );
    });
  },
);
