/**
 * The provider's promise that a failed or refused `add` leaves nothing
 * behind: a chain whose second plugin fails (after the real bridge plugin
 * made a veth and took a lease), an unknown network, an index in use.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { rootTest } from "../support/harness.ts";
import {
  type Fixture,
  linksOf,
  makeFixture,
  vethsOnBridge,
} from "./_fixture.ts";
import {
  ConflictError,
  InvalidInputError,
  OperationError,
} from "../../src/provider/errors.ts";

/** Name of the fake plugin and of the network chaining it. */
const FAIL_PLUGIN = "vmnic-test-fail";
const FAIL_NETWORK = "failing";

/**
 * A CNI plugin that fails ADD with a CNI error object and logs each call
 * beside itself; VERSION and DEL work as a real plugin's would.
 */
const FAIL_PLUGIN_SCRIPT = `#!/bin/sh
cat >/dev/null
echo "$CNI_COMMAND" >>"$(dirname "$0")/calls.log"
case "$CNI_COMMAND" in
  VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}' ;;
  ADD) echo '{"cniVersion":"1.0.0","code":999,"msg":"vmnic test plugin fails ADD","details":"on purpose"}'; exit 1 ;;
esac
exit 0
`;

/** A fixture whose conf dir also holds a network chaining the failing plugin. */
async function failingFixture(tag: string, octet: number): Promise<Fixture> {
  const fx = await makeFixture(tag, {
    octet,
    fakePlugins: { [FAIL_PLUGIN]: FAIL_PLUGIN_SCRIPT },
  });
  await Deno.writeTextFile(
    join(fx.cniConfDir, `20-${FAIL_NETWORK}.conflist`),
    JSON.stringify({
      cniVersion: "1.0.0",
      name: FAIL_NETWORK,
      plugins: [
        {
          type: "bridge",
          bridge: fx.bridge,
          isGateway: true,
          ipMasq: false,
          ipam: {
            type: "host-local",
            ranges: [[{ subnet: fx.subnet }]],
            dataDir: fx.ipamDir,
          },
        },
        { type: FAIL_PLUGIN },
      ],
    }),
  );
  return fx;
}

async function pluginCalls(fx: Fixture): Promise<string[]> {
  try {
    return (await Deno.readTextFile(join(fx.binDir, "calls.log"))).split("\n")
      .filter(Boolean);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}

rootTest(
  "provider: a plugin failing mid-chain leaves nothing behind",
  async () => {
    const fx = await failingFixture("rb", 203);
    const p = await fx.provider();
    try {
      await assert.rejects(
        p.add("vm1", { network: FAIL_NETWORK }),
        (e: unknown) => {
          assert.ok(e instanceof OperationError, String(e));
          assert.match(e.message, /vmnic test plugin fails ADD/);
          return true;
        },
      );
      // The bridge plugin ran first (the fake's ADD was reached), then the
      // chain was rolled back with DEL.
      const calls = await pluginCalls(fx);
      assert.ok(calls.includes("ADD"), `plugin calls: ${calls}`);
      assert.ok(calls.includes("DEL"), `plugin calls: ${calls}`);
      assert.deepEqual(await fx.netns(), [], "no netns with the prefix");
      assert.deepEqual(await p.list(), [], "no record");
      assert.deepEqual(await fx.leasedIps(FAIL_NETWORK), [], "no lease");
      assert.deepEqual(await vethsOnBridge(fx.bridge), [], "no host veth");
    } finally {
      p.close();
      await fx.cleanup();
    }
  },
);

rootTest(
  "provider: a failed add rolls back only itself; earlier NICs stay",
  async () => {
    const fx = await failingFixture("rk", 204);
    const p = await fx.provider();
    try {
      const [nic0] = await p.add("vm1", {});
      await assert.rejects(
        p.add("vm1", {}, { index: 1, network: FAIL_NETWORK }),
        (e: unknown) =>
          e instanceof OperationError && /rolled back/.test(e.message),
      );
      // The netns existed before: it stays, with NIC 0 as it was.
      assert.deepEqual(await fx.netns(), ["vm1"]);
      assert.deepEqual(await p.list(), [nic0]);
      const v = await p.verify("vm1");
      assert.ok(v.ok, v.problems.join("; "));
      const links = await linksOf(`${fx.prefix}vm1`);
      assert.ok(links.has("eth0") && links.has("tap0"));
      assert.ok(!links.has("eth1") && !links.has("tap1"), "no trace of NIC 1");
      assert.deepEqual(await fx.leasedIps(), [nic0.ips[0].address]);
      assert.deepEqual(await fx.leasedIps(FAIL_NETWORK), []);
      assert.equal((await vethsOnBridge(fx.bridge)).length, 1);
    } finally {
      p.close();
      await fx.cleanup();
    }
  },
);

rootTest(
  "provider: an unknown network is refused naming the known ones",
  async () => {
    const fx = await failingFixture("ru", 205);
    const p = await fx.provider();
    try {
      await assert.rejects(
        p.add("vm1", {}, { network: "no-such-net" }),
        (e: unknown) => {
          assert.ok(e instanceof InvalidInputError, String(e));
          assert.match(e.message, /no-such-net/);
          assert.ok(e.message.includes(fx.network), e.message);
          assert.ok(e.message.includes(FAIL_NETWORK), e.message);
          return true;
        },
      );
      await assert.rejects(
        p.add("vm1", { network: "no-such-net" }),
        InvalidInputError,
      );
      assert.deepEqual(await fx.netns(), []);
      assert.deepEqual(await p.list(), []);
      assert.deepEqual(await fx.leasedIps(), []);
      assert.deepEqual(await pluginCalls(fx), [], "no plugin ran");
      assert.deepEqual(await vethsOnBridge(fx.bridge), []);
    } finally {
      p.close();
      await fx.cleanup();
    }
  },
);

rootTest(
  "provider: adding an index in use returns it unchanged; a contradicting add is a conflict",
  async () => {
    const fx = await failingFixture("ri", 206);
    const p = await fx.provider();
    try {
      const [nic0] = await p.add("vm1", { cpu: 2 }, { index: 0 });
      const before = await linksOf(`${fx.prefix}vm1`);
      // A retried add is harmless: the same NIC, the same JSON.
      assert.deepEqual(await p.add("vm1", {}, { index: 0 }), [nic0]);
      assert.deepEqual(await p.add("vm1", { cpu: 2 }), [nic0]);
      for (
        const [cfg, spec, what] of [
          [{ cpu: 1 }, { index: 0 }, /queues/],
          [{}, { index: 0, network: FAIL_NETWORK }, /network/],
          [{}, { index: 0, mac: "0a:00:00:00:00:01" }, /MAC/],
          [{}, { index: 0, ips: ["10.9.9.9"] }, /IPs/],
        ] as const
      ) {
        await assert.rejects(
          p.add("vm1", cfg, spec),
          (e: unknown) => {
            assert.ok(e instanceof ConflictError, String(e));
            assert.match(e.message, what);
            assert.match(e.message, /remove it first/);
            return true;
          },
        );
      }
      assert.deepEqual(await pluginCalls(fx), [], "no plugin ran");
      // Same record, same links (same ifindex: not recreated), still wired.
      assert.deepEqual(await p.list(), [nic0]);
      const after = await linksOf(`${fx.prefix}vm1`);
      for (const dev of ["eth0", "tap0"]) {
        assert.equal(after.get(dev)?.ifindex, before.get(dev)?.ifindex, dev);
        assert.equal(after.get(dev)?.address, before.get(dev)?.address, dev);
      }
      assert.equal(after.get("eth0")?.address, nic0.mac);
      const v = await p.verify("vm1");
      assert.ok(v.ok, v.problems.join("; "));
      assert.deepEqual(await fx.leasedIps(), [nic0.ips[0].address]);
      assert.equal((await vethsOnBridge(fx.bridge)).length, 1);
    } finally {
      p.close();
      await fx.cleanup();
    }
  },
);
