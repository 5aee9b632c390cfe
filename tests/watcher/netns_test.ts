/**
 * The netns reaction, with a hostile operator's own tools: a VM's netns
 * deleted (`ip netns del`), its TAP deleted, its redirect removed (`tc
 * filter del`). With `repair`, the watcher runs `recover` and `verify` is
 * ok again with the same NIC id, MAC and IPs; with `report`, it only
 * records what it saw, once. A netns whose mount went while a process
 * (its hypervisor) holds it lives on with its NICs attached: rebuilding
 * beside it would put a second NIC with the same MAC on the bridge, so it
 * is reported and repaired only once it has died.
 */
import assert from "node:assert/strict";
import { rootTest, run, sh } from "../support/harness.ts";
import type { EventRecord } from "../../src/store/events.ts";
import type { NicConfig } from "../../src/provider/types.ts";
import {
  sleep,
  TEST_SETTLE_MS,
  waitFor,
  type WatchEnv,
  withWatchEnv,
} from "./_support.ts";

/** A repair runs the plugins (CNI DEL and ADD): more room than a quiesce. */
const REPAIR_BOUND_MS = 15_000;
const QUIET_MS = TEST_SETTLE_MS * 4 + 1_000;

/** Waits for a `watch:repair` event; returns every watch event by then. */
async function repaired(env: WatchEnv, n = 1): Promise<EventRecord[]> {
  const { value } = await waitFor(`${n} repair(s)`, async () => {
    const es = await env.watchEvents();
    return es.filter((e) => e.op === "watch:repair").length >= n
      ? es
      : undefined;
  }, REPAIR_BOUND_MS);
  return value;
}

/** The NIC as it must stay: id, MAC, IPs, TAP. */
function identity(n: NicConfig) {
  return { id: n.id, mac: n.mac, ips: n.ips, tap: n.tap, index: n.index };
}

async function assertHealthy(env: WatchEnv, before: NicConfig[]) {
  const v = await env.provider.verify("vm1");
  assert.equal(v.ok, true, v.problems.join("; "));
  const after = await env.provider.list({ vmId: "vm1" });
  assert.deepEqual(after.map(identity), before.map(identity));
}

rootTest(
  "watcher: a VM's netns deleted by hand is reported and, with repair on, recovered with the same MAC and IPs",
  async () => {
    let before: NicConfig[] = [];
    await withWatchEnv("wn1", {
      octet: 196,
      watch: { netns: "repair" },
      before: async (p) => void (before = await p.add("vm1")),
    }, async (env) => {
      const ns = env.fx.prefix + "vm1";
      await sh("ip", "netns", "del", ns);
      const events = await repaired(env);
      assert.deepEqual(events.map((e) => [e.op, e.outcome]), [
        ["watch:report", "failed"],
        ["watch:repair", "ok"],
      ]);
      assert.match(
        events[0].error ?? "",
        new RegExp(`netns \\S*${ns} is gone`),
      );
      assert.equal(events[0].vmId, "vm1");
      // The rebuild ran the plugins inside the repair's event.
      assert.ok(
        events[1].phases.some((p) => p.name === "plugin:bridge:ADD"),
        JSON.stringify(events[1].phases),
      );
      await assertHealthy(env, before);
      const c = env.watcher.counters.reactions.netns;
      assert.deepEqual(c, { reported: 1, repaired: 1, failed: 0 });
      // Nothing more to do: no further event.
      await sleep(QUIET_MS);
      assert.equal((await env.watchEvents()).length, 2);
    });
  },
);

rootTest(
  "watcher: a TAP and a redirect removed by hand are repaired in place",
  async () => {
    let before: NicConfig[] = [];
    await withWatchEnv("wn2", {
      octet: 197,
      watch: { netns: "repair" },
      before: async (p) => void (before = await p.add("vm1")),
    }, async (env) => {
      const ns = env.fx.prefix + "vm1";
      await sh("ip", "-n", ns, "link", "del", "tap0");
      let events = await repaired(env);
      assert.match(events[0].error ?? "", /NIC 0: TAP tap0 is gone/);
      assert.equal(events[0].index, 0);
      await assertHealthy(env, before);

      await sh("tc", "-n", ns, "filter", "del", "dev", "eth0", "ingress");
      events = await repaired(env, 2);
      assert.match(
        events[2].error ?? "",
        /NIC 0: the redirects between eth0 and tap0 are gone/,
      );
      assert.equal(events[3].outcome, "ok");
      await assertHealthy(env, before);
    });
  },
);

rootTest(
  "watcher: a VM's netns deleted by hand, netns reaction report: one event, nothing repaired",
  async () => {
    await withWatchEnv("wn3", {
      octet: 198,
      watch: { netns: "report", sweepMs: 1_000 },
      before: async (p) => void await p.add("vm1"),
    }, async (env) => {
      await sh("ip", "netns", "del", env.fx.prefix + "vm1");
      await waitFor("a report", async () => (await env.watchEvents()).length);
      // Sweeps come and go: the same finding is not told twice.
      await sleep(QUIET_MS + 2_000);
      const events = await env.watchEvents();
      assert.deepEqual(events.map((e) => e.op), ["watch:report"]);
      assert.match(events[0].error ?? "", /is gone/);
      const v = await env.provider.verify("vm1", { check: false });
      assert.equal(v.netns, false);
      assert.equal(env.watcher.counters.reactions.netns.reported, 1);
    });
  },
);

rootTest(
  "watcher: a netns whose mount went but a process holds is not rebuilt beside itself; repaired once it dies",
  async () => {
    let before: NicConfig[] = [];
    let holder: Deno.ChildProcess | undefined;
    await withWatchEnv("wn4", {
      octet: 199,
      watch: { netns: "repair" },
      before: async (p) => void (before = await p.add("vm1")),
    }, async (env) => {
      const path = before[0].netnsPath;
      // A process in the netns, as a hypervisor is.
      holder = new Deno.Command("nsenter", {
        args: [`--net=${path}`, "--", "sleep", "300"],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      await sleep(200);
      await sh("ip", "netns", "del", env.fx.prefix + "vm1");
      const { value } = await waitFor(
        "a report",
        async () => (await env.watchEvents()).at(0),
        REPAIR_BOUND_MS,
      );
      assert.equal(value.op, "watch:report");
      assert.match(value.error ?? "", /lives on/);
      await sleep(QUIET_MS);
      assert.deepEqual((await env.watchEvents()).map((e) => e.op), [
        "watch:report",
      ]);
      // The old veth pair still on the bridge, alone.
      const ports = await run("ip", [
        "-j",
        "link",
        "show",
        "master",
        env.fx.bridge,
      ]);
      assert.equal(JSON.parse(ports.stdout).length, 1);
      // The hypervisor ends: the namespace dies, the NIC is rebuilt.
      Deno.kill(holder.pid, "SIGKILL");
      await holder.status;
      holder = undefined;
      const events = await repaired(env);
      assert.equal(events.at(-1)!.outcome, "ok");
      await assertHealthy(env, before);
    }).finally(async () => {
      if (holder) {
        Deno.kill(holder.pid, "SIGKILL");
        await holder.status;
      }
    });
  },
);
