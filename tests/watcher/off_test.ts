/**
 * Each reaction `off` (the other two on `repair`): what it would react to
 * happens, and nothing changes and no event is recorded. With all three
 * off the watcher does not even listen.
 */
import assert from "node:assert/strict";
import { ipJson, rootTest, sh } from "../support/harness.ts";
import { isQuiesced, sleep, TEST_SETTLE_MS, withWatchEnv } from "./_support.ts";

/** Long past when a reaction would have come (settle, a check, a retry). */
const QUIET_MS = TEST_SETTLE_MS * 4 + 1_500;

rootTest(
  "watcher: carrier off: a TAP losing its carrier changes nothing",
  async () => {
    await withWatchEnv("wo1", {
      octet: 176,
      watch: { carrier: "off", netns: "repair", host: "repair" },
      before: async (p) => void await p.add("vm1"),
    }, async ({ provider, attach, detach, watchEvents, watcher }) => {
      const fd = attach("vm1", "tap0");
      await sleep(TEST_SETTLE_MS * 2);
      detach(fd);
      await sleep(QUIET_MS);
      assert.equal(await isQuiesced(provider, "vm1"), false);
      assert.deepEqual(await watchEvents(), []);
      assert.equal(watcher.counters.reactions["carrier-lost"].reported, 0);
    });
  },
);

rootTest(
  "watcher: netns off: a netns and a TAP deleted by hand stay deleted, no event",
  async () => {
    await withWatchEnv("wo2", {
      octet: 177,
      watch: { carrier: "repair", netns: "off", host: "repair" },
      before: async (p) => void await p.add("vm1", {}, {}, {}),
    }, async ({ fx, provider, watchEvents }) => {
      await sh("ip", "-n", fx.prefix + "vm1", "link", "del", "tap1");
      await sleep(QUIET_MS);
      let v = await provider.verify("vm1", { check: false });
      assert.equal(v.nics[1].tapPresent, false);
      await sh("ip", "netns", "del", fx.prefix + "vm1");
      await sleep(QUIET_MS);
      v = await provider.verify("vm1", { check: false });
      assert.equal(v.netns, false);
      assert.deepEqual(await watchEvents(), []);
    });
  },
);

rootTest(
  "watcher: host off: a host veth detached stays detached, no event",
  async () => {
    await withWatchEnv("wo3", {
      octet: 178,
      watch: { carrier: "repair", netns: "repair", host: "off" },
      before: async (p) => void await p.add("vm1"),
    }, async ({ provider, watchEvents }) => {
      const v = await provider.verify("vm1", { check: false });
      const veth = v.nics[0].host.name!;
      await sh("ip", "link", "set", veth, "nomaster");
      await sleep(QUIET_MS);
      const [l] = await ipJson<{ master?: string }>(
        "link",
        "show",
        "dev",
        veth,
      );
      assert.equal(l.master, undefined);
      assert.deepEqual(await watchEvents(), []);
    });
  },
);

rootTest(
  "watcher: all reactions off: it does not listen, nothing happens",
  async () => {
    await withWatchEnv("wo4", {
      octet: 179,
      watch: { carrier: "off", netns: "off", host: "off" },
      before: async (p) => void await p.add("vm1"),
    }, async ({ fx, provider, attach, detach, watchEvents, watcher }) => {
      assert.equal(watcher.status().running, false);
      detach(attach("vm1", "tap0"));
      await sh("ip", "netns", "del", fx.prefix + "vm1");
      await sleep(QUIET_MS);
      assert.equal(
        (await provider.verify("vm1", { check: false })).netns,
        false,
      );
      assert.deepEqual(await watchEvents(), []);
      assert.equal(watcher.counters.notifications, 0);
    });
  },
);
