/**
 * The carrier reaction with real TAPs: a TAP's carrier is on exactly while
 * a descriptor holds it open (its hypervisor), so opening and closing it
 * here, or killing a stand-in process holding it, is what a hypervisor
 * starting, stopping or crashing does to it. The watcher must quiesce the
 * VM once no TAP of it has a carrier, unquiesce it when one comes back,
 * ignore a flap shorter than its settle time and vmnic's own quiesce, and
 * in `report` mode only tell.
 */
import assert from "node:assert/strict";
import { rootTest } from "../support/harness.ts";
import {
  isQuiesced,
  REACTION_BOUND_MS,
  sleep,
  spawnTapHolder,
  TEST_SETTLE_MS,
  waitFor,
  withWatchEnv,
} from "./_support.ts";

/** Long enough for a reaction that should not come to have come. */
const QUIET_MS = TEST_SETTLE_MS * 3 + 500;

rootTest(
  "watcher: a TAP losing its carrier quiesces its VM; the carrier back unquiesces it",
  async () => {
    await withWatchEnv("wc1", {
      octet: 190,
      watch: { carrier: "repair" },
      before: async (p) => void await p.add("vm1"),
    }, async ({ provider, attach, detach, watchEvents }) => {
      // The hypervisor starts: carrier on an unquiesced VM, nothing to do.
      const fd = attach("vm1", "tap0");
      await sleep(QUIET_MS);
      assert.equal(await isQuiesced(provider, "vm1"), false);
      assert.deepEqual(await watchEvents(), []);

      // It stops: the TAP loses its carrier.
      detach(fd);
      const lost = await waitFor(
        "VM quiesced after its TAP lost its carrier",
        () => isQuiesced(provider, "vm1"),
      );
      assert.ok(lost.ms < REACTION_BOUND_MS);
      const v = await provider.verify("vm1", { check: false });
      assert.equal(v.ok, true, v.problems.join("; "));
      assert.equal(v.quiesced, true);
      assert.equal(v.nics[0].vethUp, false);
      assert.equal(v.nics[0].state, "quiesced");

      // It starts again: carrier back.
      attach("vm1", "tap0");
      await waitFor(
        "VM unquiesced after its TAP got its carrier back",
        async () => !(await isQuiesced(provider, "vm1")),
      );
      const v2 = await provider.verify("vm1", { check: false });
      assert.equal(v2.ok, true, v2.problems.join("; "));
      assert.equal(v2.nics[0].vethUp, true);

      const events = await watchEvents();
      assert.deepEqual(
        events.map((e) => [e.op, e.vmId, e.index, e.outcome, e.error]),
        [
          ["watch:carrier-lost", "vm1", 0, "ok", null],
          ["watch:carrier-back", "vm1", 0, "ok", null],
        ],
      );
      // The quiesce ran inside the reaction's event, under the VM's lock.
      assert.ok(events[0].phases.some((p) => p.name === "lock"));
      // The operations themselves record no event of their own.
      const all = await provider.events();
      assert.equal(all.filter((e) => e.op === "quiesce").length, 0);
    });
  },
);

rootTest(
  "watcher: a hypervisor process killed: its VM is quiesced",
  async () => {
    await withWatchEnv("wc2", {
      octet: 191,
      watch: { carrier: "repair" },
      before: async (p) => void await p.add("vm1", { cpu: 2 }),
    }, async ({ provider, watcher }) => {
      // Two queue pairs: a multi-queue TAP, as QEMU opens it with mq=on.
      const [nic] = await provider.list({ vmId: "vm1" });
      assert.equal(nic.numQueues, 2);
      const hv = await spawnTapHolder(nic.netnsPath, nic.tap, true);
      await sleep(QUIET_MS);
      assert.equal(await isQuiesced(provider, "vm1"), false);
      const killedAt = performance.now();
      await hv.kill();
      await waitFor(
        "VM quiesced after its hypervisor was killed",
        () => isQuiesced(provider, "vm1"),
      );
      assert.ok(performance.now() - killedAt < REACTION_BOUND_MS);
      assert.equal(watcher.counters.reactions["carrier-lost"].repaired, 1);
    });
  },
);

rootTest(
  "watcher: two NICs: the VM is quiesced once neither TAP has a carrier",
  async () => {
    await withWatchEnv("wc3", {
      octet: 192,
      watch: { carrier: "repair" },
      before: async (p) => void await p.add("vm1", {}, {}, {}),
    }, async ({ provider, attach, detach, watchEvents }) => {
      const fd0 = attach("vm1", "tap0");
      const fd1 = attach("vm1", "tap1");
      await sleep(QUIET_MS);
      // One NIC's TAP closed (a hot-unplug): the other still carries traffic.
      detach(fd0);
      await sleep(QUIET_MS);
      assert.equal(await isQuiesced(provider, "vm1"), false);
      assert.deepEqual(await watchEvents(), []);
      // Both closed: the hypervisor is gone.
      detach(fd1);
      await waitFor("VM quiesced", () => isQuiesced(provider, "vm1"));
      const [lost] = await watchEvents();
      assert.equal(lost.op, "watch:carrier-lost");
      assert.equal(lost.index, 1);
      // One TAP opened again: the VM runs.
      attach("vm1", "tap0");
      await waitFor(
        "VM unquiesced",
        async () => !(await isQuiesced(provider, "vm1")),
      );
      const v = await provider.verify("vm1", { check: false });
      assert.equal(v.ok, true, v.problems.join("; "));
      assert.deepEqual(v.nics.map((n) => n.vethUp), [true, true]);
    });
  },
);

rootTest(
  "watcher: a hypervisor restarting within the settle time is no event",
  async () => {
    await withWatchEnv("wc4", {
      octet: 193,
      watch: { carrier: "repair", settleMs: 1_000 },
      before: async (p) => void await p.add("vm1"),
    }, async ({ provider, attach, detach, watchEvents }) => {
      const fd = attach("vm1", "tap0");
      await sleep(300);
      detach(fd);
      await sleep(50);
      attach("vm1", "tap0");
      await sleep(2_000);
      assert.equal(await isQuiesced(provider, "vm1"), false);
      assert.deepEqual(await watchEvents(), []);
    });
  },
);

rootTest(
  "watcher: vmnic's own quiesce and unquiesce are no carrier event",
  async () => {
    await withWatchEnv("wc5", {
      octet: 194,
      watch: { carrier: "repair", netns: "repair", host: "repair" },
      before: async (p) => void await p.add("vm1"),
    }, async ({ provider, attach, watchEvents, watcher }) => {
      attach("vm1", "tap0");
      await sleep(QUIET_MS);
      await provider.quiesce("vm1");
      await sleep(QUIET_MS);
      assert.equal(await isQuiesced(provider, "vm1"), true);
      await provider.quiesce("vm1", false);
      await sleep(QUIET_MS);
      assert.equal(await isQuiesced(provider, "vm1"), false);
      assert.deepEqual(await watchEvents(), []);
      const c = watcher.counters.reactions;
      assert.equal(c["carrier-lost"].repaired + c["carrier-back"].repaired, 0);
    });
  },
);

rootTest(
  "watcher: carrier in report mode: an event, the VM left as it is",
  async () => {
    await withWatchEnv("wc6", {
      octet: 195,
      watch: { carrier: "report" },
      before: async (p) => void await p.add("vm1"),
    }, async ({ provider, attach, detach, watchEvents, watcher }) => {
      const fd = attach("vm1", "tap0");
      await sleep(QUIET_MS);
      detach(fd);
      const { value: [e] } = await waitFor("a report", async () => {
        const es = await watchEvents();
        return es.length ? es : undefined;
      });
      assert.equal(e.op, "watch:report");
      assert.equal(e.outcome, "failed");
      assert.equal(e.index, 0);
      assert.match(e.error ?? "", /TAP tap0 lost its carrier/);
      await sleep(QUIET_MS);
      assert.equal(await isQuiesced(provider, "vm1"), false);
      assert.equal((await watchEvents()).length, 1);
      assert.equal(watcher.counters.reactions["carrier-lost"].reported, 1);
    });
  },
);
