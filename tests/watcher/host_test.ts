/**
 * The host reaction: a NIC's host veth taken off its bridge by hand (`ip
 * link set X nomaster`), and the bridge itself deleted. `report` records
 * it and leaves it; `repair` puts the veth back on its bridge, or rebuilds
 * the NIC so the bridge plugin makes the bridge again.
 */
import assert from "node:assert/strict";
import { ipJson, rootTest, sh } from "../support/harness.ts";
import type { NicConfig } from "../../src/provider/types.ts";
import { sleep, TEST_SETTLE_MS, waitFor, withWatchEnv } from "./_support.ts";

const REPAIR_BOUND_MS = 15_000;
const QUIET_MS = TEST_SETTLE_MS * 4 + 1_000;

/** The master of a host link, or undefined. */
async function masterOf(dev: string): Promise<string | undefined> {
  const [l] = await ipJson<{ master?: string }>("link", "show", "dev", dev);
  return l?.master;
}

rootTest(
  "watcher: a host veth detached from its bridge is reported, and left so in report mode",
  async () => {
    await withWatchEnv("wh1", {
      octet: 186,
      watch: { host: "report" },
      before: async (p) => void await p.add("vm1"),
    }, async (env) => {
      const v = await env.provider.verify("vm1", { check: false });
      const veth = v.nics[0].host.name!;
      await sh("ip", "link", "set", veth, "nomaster");
      const { value: e } = await waitFor(
        "a report",
        async () => (await env.watchEvents()).at(0),
      );
      assert.equal(e.op, "watch:report");
      assert.equal(e.outcome, "failed");
      assert.equal(e.index, 0);
      assert.equal(
        e.error,
        `NIC 0: host veth ${veth} is off bridge ${env.fx.bridge}`,
      );
      await sleep(QUIET_MS);
      assert.equal(await masterOf(veth), undefined);
      assert.equal((await env.watchEvents()).length, 1);
      assert.deepEqual(env.watcher.counters.reactions.host, {
        reported: 1,
        repaired: 0,
        failed: 0,
      });
    });
  },
);

rootTest(
  "watcher: a host veth detached from its bridge is put back with repair on",
  async () => {
    await withWatchEnv("wh2", {
      octet: 187,
      watch: { host: "repair" },
      before: async (p) => void await p.add("vm1"),
    }, async (env) => {
      const v = await env.provider.verify("vm1", { check: false });
      const veth = v.nics[0].host.name!;
      await sh("ip", "link", "set", veth, "nomaster");
      await waitFor(
        "the host veth back on its bridge",
        async () => (await masterOf(veth)) === env.fx.bridge,
        REPAIR_BOUND_MS,
      );
      const events = await env.watchEvents();
      assert.deepEqual(events.map((e) => [e.op, e.outcome]), [
        ["watch:report", "failed"],
        ["watch:repair", "ok"],
      ]);
      const after = await env.provider.verify("vm1");
      assert.equal(after.ok, true, after.problems.join("; "));
    });
  },
);

rootTest(
  "watcher: the bridge deleted: repair rebuilds the NIC (the plugin makes the bridge again)",
  async () => {
    let before: NicConfig[] = [];
    await withWatchEnv("wh3", {
      octet: 188,
      watch: { host: "repair" },
      before: async (p) => void (before = await p.add("vm1")),
    }, async (env) => {
      await sh("ip", "link", "del", env.fx.bridge);
      const { value: events } = await waitFor("a repair", async () => {
        const es = await env.watchEvents();
        return es.some((e) => e.op === "watch:repair") ? es : undefined;
      }, REPAIR_BOUND_MS);
      assert.match(
        events[0].error ?? "",
        new RegExp(`bridge ${env.fx.bridge} is gone`),
      );
      assert.equal(events.at(-1)!.outcome, "ok", events.at(-1)!.error ?? "");
      const after = await env.provider.verify("vm1");
      assert.equal(after.ok, true, after.problems.join("; "));
      const nics = await env.provider.list({ vmId: "vm1" });
      assert.deepEqual(
        nics.map((n) => [n.id, n.mac, n.ips]),
        before.map((n) => [n.id, n.mac, n.ips]),
      );
    });
  },
);

rootTest(
  "watcher: a VM added while it runs is watched too (its host veth, its TAP)",
  async () => {
    await withWatchEnv("wh4", {
      octet: 189,
      watch: { host: "report", carrier: "repair" },
    }, async (env) => {
      assert.equal(env.watcher.status().vms, 0);
      const [nic] = await env.provider.add("vm1");
      await waitFor(
        "vm1 watched",
        () => env.watcher.status().nics === 1,
      );
      const v = await env.provider.verify("vm1", { check: false });
      await sh("ip", "link", "set", v.nics[0].host.name!, "nomaster");
      const { value: e } = await waitFor(
        "a report",
        async () => (await env.watchEvents()).at(0),
      );
      assert.match(e.error ?? "", /is off bridge/);
      const fd = env.attach("vm1", nic.tap);
      await sleep(TEST_SETTLE_MS * 2);
      env.detach(fd);
      await waitFor(
        "vm1 quiesced",
        async () => (await env.provider.vms())[0].quiesced,
      );
    });
  },
);
