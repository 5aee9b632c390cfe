/**
 * The warm pool (docs/pool.md) over the in-memory kernel and plugins: slots
 * fill, a one-NIC add of a new VM takes one (same records, hooks and JSON as
 * any add), hooks can veto, and a crash at every point of a fill or a claim
 * is finished or undone by the next start; gc knows slots.
 */
import assert from "node:assert/strict";
import { FAULT_POINTS } from "../../src/provider/faults.ts";
import { GcOrchestrator } from "../../src/provider/gc_orchestrator.ts";
import { claimPath } from "../../src/provider/ownership.ts";
import { acquireVmLock } from "../../src/store/locks.ts";
import type { CniProvider } from "../../src/provider/provider.ts";
import { type FakeWorld, fakeWorld } from "../support/fake_provider.ts";

const POOL = [{ network: "vmnic", count: 2, queues: 1 }];

async function inWorld(fn: (w: FakeWorld) => Promise<void>): Promise<void> {
  const w = await fakeWorld();
  try {
    await fn(w);
  } finally {
    await w.dispose();
  }
}

/** Waits until the pool has `ready` slots (fills run in the background). */
async function poolReady(p: CniProvider, ready: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const s = await p.poolStatus();
    if (s.pools.every((x) => x.ready >= ready && x.filling === 0)) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(
    `pool never reached ${ready}: ${JSON.stringify(await p.poolStatus())}`,
  );
}

Deno.test("a one-NIC add takes a ready slot: the VM's netns name, records and hooks, as any add", async () => {
  await inWorld(async (w) => {
    const p = await w.open({ pool: POOL });
    try {
      await poolReady(p, 2);
      const slots = (await p.poolStatus()).pools[0].slots;
      assert.equal(slots.length, 2);
      const adds = w.plugins.callsOf("ADD").length;
      const hooks = w.hooks.length;
      const [nic] = await p.add("vm1", {});
      assert.equal(nic.vmId, "vm1");
      assert.equal(nic.netnsPath, `${w.config.netnsDir}/t-vm1`);
      assert.equal(nic.state, "active");
      assert.ok(
        slots.some((s) => s.ips.includes(nic.ips[0].address)),
        "a slot's IP",
      );
      assert.equal(
        w.plugins.callsOf("ADD").length,
        adds,
        "no CNI ADD for the claim itself",
      );
      assert.deepEqual(
        w.hooks.slice(hooks).map((h) => `${h.event}:${h.vmId}`),
        ["beforeAdd:vm1", "afterAdd:vm1"],
      );
      // Nothing a user sees differs from an unpooled NIC.
      assert.ok(w.kernel.netnsExists("t-vm1", w.config.netnsDir!));
      assert.deepEqual(await p.list(), [nic]);
      assert.deepEqual((await p.vms()).map((v) => v.vmId), ["vm1"]);
      assert.equal(
        (await p.verify("vm1")).ok,
        true,
        "CNI CHECK passes in the renamed netns",
      );
      // The pool fills again.
      await poolReady(p, 2);
      assert.equal((await p.poolStatus()).pools[0].claimed, 1);
      assert.equal((await p.list({ pool: true })).length, 2);
      // Retried: the same NIC, no second slot taken.
      assert.deepEqual(await p.add("vm1", {}), [nic]);
      assert.deepEqual((await p.delete(["vm1"])).errors, []);
      const orch = new GcOrchestrator();
      orch.register(p.gcModule({ includePool: true }));
      const [r] = await orch.run([]);
      assert.equal(
        r.collected.length,
        2,
        "gc --include-pool retires the slots",
      );
    } finally {
      await p.shutdown();
    }
    assert.deepEqual(await w.leaks(), []);
  });
});

Deno.test("a pool's first fill claims the netns prefix for its install and root dir, as any add does", async () => {
  await inWorld(async (w) => {
    const claim = claimPath(w.config.netnsDir!, w.config.netnsPrefix!);
    const p = await w.open({ pool: POOL });
    try {
      await poolReady(p, 2);
      const held = JSON.parse(await Deno.readTextFile(claim));
      assert.equal(held.installId, p.installId);
      assert.equal(held.rootDir, await Deno.realPath(w.config.rootDir!));
    } finally {
      await p.shutdown();
    }
  });
});

Deno.test("what a slot cannot serve goes the normal way: other network or queues, several NICs, a MAC", async () => {
  await inWorld(async (w) => {
    const p = await w.open({ pool: POOL });
    try {
      await poolReady(p, 2);
      const adds = () =>
        w.plugins.callsOf("ADD").filter((c) =>
          !c.containerId.includes("_slot-")
        ).length;
      await p.add("vm2", { cpu: 2 });
      await p.add("vm3", {}, {}, {});
      await p.add("vm4", {}, { index: 0, mac: "0a:00:00:00:00:04" });
      assert.equal(adds(), 4, "four NICs made by CNI ADD of their own");
      assert.equal((await p.poolStatus()).pools[0].claimed, 0);
    } finally {
      await p.shutdown();
    }
  });
});

Deno.test("a beforeAdd veto gives the slot back untouched; an afterAdd failure retires it like any NIC", async () => {
  await inWorld(async (w) => {
    const p = await w.open({ pool: POOL });
    try {
      await poolReady(p, 2);
      const before = (await p.poolStatus()).pools[0].slots.map((s) => s.id)
        .sort();
      w.failHook("beforeAdd");
      await assert.rejects(p.add("vm1", {}), /test hook refuses beforeAdd/);
      const after = (await p.poolStatus()).pools[0].slots.map((s) => s.id)
        .sort();
      assert.deepEqual(after, before, "the same slots, still ready");
      assert.equal(w.kernel.netnsExists("t-vm1", w.config.netnsDir!), false);
      w.failHook("afterAdd");
      await assert.rejects(
        p.add("vm1", {}),
        /test hook refuses afterAdd.*rolled back/,
      );
      assert.deepEqual(await p.vms(), []);
      assert.equal(w.kernel.netnsExists("t-vm1", w.config.netnsDir!), false);
      await poolReady(p, 2);
    } finally {
      await p.shutdown();
    }
  });
});

Deno.test("a crash at every point of a fill or a claim: the next start finishes or undoes it, nothing leaks", async (t) => {
  const points = FAULT_POINTS.filter((x) => x.startsWith("pool:"));
  for (const point of points) {
    await t.step(point, async () => {
      await inWorld(async (w) => {
        if (point === "pool:slot-recorded") {
          await w.crashAt(point, async (p) => {
            // Reaching the point needs a fill: open with a pool.
            await p.poolStatus();
          }, { pool: POOL });
        } else {
          const p = await w.open({ pool: POOL });
          await poolReady(p, 2);
          await p.shutdown();
          await w.crashAt(point, (q) => q.add("vm1", {}), { pool: POOL });
        }
        // The next daemon start: claims undone, half-made slots retired.
        const p = await w.open({ pool: POOL });
        try {
          await poolReady(p, 2);
          // Before the records moved, the claim is undone; after, the VM
          // has its NIC (as after a crash at add:active) and a retried add
          // returns it.
          assert.deepEqual(
            (await p.vms()).map((v) => v.vmId),
            point === "pool:claimed" ? ["vm1"] : [],
          );
          const [nic] = await p.add("vm1", {});
          assert.equal(nic.state, "active");
          assert.equal((await p.verify("vm1")).ok, true);
          await p.delete(["vm1"]);
          const orch = new GcOrchestrator();
          orch.register(p.gcModule({ includePool: true }));
          await orch.run([]);
        } finally {
          await p.shutdown();
        }
        assert.deepEqual(await w.leaks(), []);
      });
    });
  }
});

Deno.test("slots outlive the process that filled them; a provider given pools (even none) retires the ones it does not want, one given no pool option leaves them", async () => {
  await inWorld(async (w) => {
    const p = await w.open({ pool: POOL });
    await poolReady(p, 2);
    await p.shutdown();
    const slotsOf = async (q: CniProvider) =>
      (await q.list({ pool: true })).length;
    // A library user beside the daemon: slots are none of its business.
    const lib = await w.open();
    assert.equal(await slotsOf(lib), 2);
    lib.close();
    // The same pools again: the slots are taken back as ready, no new fill.
    const adds = w.plugins.callsOf("ADD").length;
    const again = await w.open({ pool: POOL });
    await poolReady(again, 2);
    assert.equal(w.plugins.callsOf("ADD").length, adds, "slots reused");
    await again.shutdown();
    // A daemon started without --pool: no slot is wanted any more.
    const none = await w.open({ pool: [] });
    assert.equal(await slotsOf(none), 0);
    assert.deepEqual((await none.poolStatus()).pools, []);
    none.close();
    assert.deepEqual(await w.leaks(), []);
  });
});

Deno.test("a slot keeps its lock file while it waits, hands it over with the claim, and a busy slot goes back to the pool", async () => {
  await inWorld(async (w) => {
    const p = await w.open({ pool: POOL });
    const locks = `${w.config.runDir}/locks`;
    const lockFiles = () =>
      [...Deno.readDirSync(locks)].map((e) => e.name).sort();
    try {
      await poolReady(p, 2);
      const slots = (await p.poolStatus()).pools[0].slots.map((s) => s.id)
        .sort();
      assert.deepEqual(lockFiles(), slots.map((s) => `${s}.lock`));
      // Another process works on the first slot: the claim takes the
      // other, and the busy one is still the pool's.
      const [first] = slots;
      const busyIps = (await p.poolStatus()).pools[0].slots.find((s) =>
        s.id === first
      )!.ips.map((ip) => ip.split("/")[0]);
      const held = await acquireVmLock(w.config.runDir!, first, {
        waitMs: 0,
        op: "gc",
      });
      assert.ok(held);
      try {
        const [nic] = await p.add("vm2", {});
        assert.equal(nic.vmId, "vm2");
      } finally {
        held.release();
      }
      // Back at the front of the pool: the next claim takes it (its IP).
      const [next] = await p.add("vm4", {});
      assert.deepEqual(
        next.ips.map((i) => i.address),
        busyIps,
        "the busy slot was given back",
      );
      const claimed = slots.find((s) => s !== first)!;
      assert.ok(
        !lockFiles().includes(`${claimed}.lock`),
        "the claimed slot's lock file went with it",
      );
      assert.ok(lockFiles().includes("vm2.lock"));
      // A veto gives the slot back with its lock file.
      await poolReady(p, 2);
      const ready = (await p.poolStatus()).pools[0].slots.map((s) =>
        `${s.id}.lock`
      );
      w.failHook("beforeAdd");
      await assert.rejects(p.add("vm3", {}), /test hook refuses beforeAdd/);
      for (const f of ready) assert.ok(lockFiles().includes(f), f);
    } finally {
      await p.shutdown();
    }
  });
});
