/**
 * The clone NIC's routed path at the kernel layer (src/wiring/clone_path.ts,
 * src/kernel/route.ts, src/kernel/sysctl.ts, src/sys/libnftables.ts), in
 * throwaway namespaces with a veth made by iproute2 standing in for the CNI
 * plugin's: what plumbing makes, that sysctls written through the switched
 * thread are that netns's own (the test's host netns keeps its value), a
 * typed error from a bad nft batch, a plumbing failure leaving nothing, and
 * the removal leaving nothing. iproute2, nft and sysctl are the oracles.
 * Plus the pure parts (ruleset text, subnet helpers, guest input rules)
 * without root.
 */
import assert from "node:assert/strict";
import { hostKernel } from "../../src/wiring/kernel.ts";
import {
  CLONE_RULE_PRIORITY_BASE,
  CLONE_TABLE_BASE,
  type ClonePathSpec,
  cloneRuleset,
  inspectClonePath,
  networkOf,
  plumbClonePath,
  repairClonePath,
  unplumbClonePath,
} from "../../src/wiring/clone_path.ts";
import { NftError, runNft } from "../../src/sys/libnftables.ts";
import { readSysctl } from "../../src/kernel/sysctl.ts";
import { sameSubnet, validateGuestSpec } from "../../src/provider/validate.ts";
import { InvalidInputError } from "../../src/provider/errors.ts";
import {
  ipJson,
  rootTest,
  run,
  sh,
  uniquePrefix,
  withScratchNetns,
} from "../support/harness.ts";

const SPEC: ClonePathSpec = {
  veth: "eth0",
  tap: "tap0",
  index: 0,
  queues: 1,
  guest: { address: "10.248.0.5", prefix: 24 },
  net: { address: "10.248.0.7", prefix: 24 },
  routes: [{ dst: "0.0.0.0/0", gw: "10.248.0.1" }],
};

Deno.test("clone ruleset: DNAT of the CNI address to the guest, SNAT back, forward filter, TAP ingress; one batch that replaces the tables", () => {
  const text = cloneRuleset(SPEC);
  const lines = text.trim().split("\n");
  assert.deepEqual(lines.slice(0, 3), [
    "add table ip vmnic_tap0",
    "delete table ip vmnic_tap0",
    "add table ip vmnic_tap0",
  ]);
  assert.ok(lines.includes(
    'add rule ip vmnic_tap0 nat_in iifname "eth0" ip daddr 10.248.0.7 dnat to 10.248.0.5',
  ));
  assert.ok(lines.includes(
    'add rule ip vmnic_tap0 nat_out oifname "eth0" ip saddr 10.248.0.5 snat to 10.248.0.7',
  ));
  assert.ok(lines.some((l) => l.includes("masquerade")) === false);
  assert.throws(
    () => cloneRuleset({ ...SPEC, guest: { address: "fd00::5", prefix: 64 } }),
    /IPv4/,
  );
  assert.throws(() => cloneRuleset({ ...SPEC, veth: 'eth0" accept' }));
});

Deno.test("subnet helpers and the guest identity's input rules", () => {
  assert.equal(networkOf("10.1.2.3", 16), "10.1.0.0/16");
  assert.equal(networkOf("10.1.2.3", 32), "10.1.2.3/32");
  assert.equal(networkOf("10.1.2.3", 0), "0.0.0.0/0");
  assert.ok(sameSubnet("10.1.2.3", "10.1.9.9", 16));
  assert.ok(!sameSubnet("10.1.2.3", "10.2.2.3", 16));
  const ok = {
    mac: "0a:58:00:00:00:01",
    ip: "10.0.0.5/24",
    gateway: "10.0.0.1",
  };
  validateGuestSpec("add", "vm", ok);
  for (
    const [bad, says] of [
      [{ ...ok, mac: "ff:ff:ff:ff:ff:ff" }, /multicast/],
      [{ ...ok, ip: "10.0.0.5" }, /no prefix/],
      [{ ...ok, ip: "fd00::5/64" }, /IPv4 only/],
      [{ ...ok, gateway: "10.0.1.1" }, /outside/],
      [{ ...ok, gateway: "10.0.0.5" }, /own address/],
      [{ ...ok, gateway: "10.0.0.1/24" }, /without a prefix/],
      [{ ...ok, extra: 1 }, /unknown guest field/],
    ] as const
  ) {
    assert.throws(
      () => validateGuestSpec("add", "vm", bad as never),
      (e) => e instanceof InvalidInputError && says.test(e.message),
      JSON.stringify(bad),
    );
  }
});

/** A netns with a veth `eth0` holding `10.248.0.7/24`, its peer in this one. */
async function withVethNetns(
  fn: (path: string, ns: string, peer: string) => Promise<void>,
): Promise<void> {
  const prefix = uniquePrefix("cp");
  const peer = `vcp${Deno.pid.toString(36)}`.slice(0, 15);
  await run("ip", ["link", "set", "lo", "up"]);
  try {
    await withScratchNetns(prefix, ["a"], async ([path]) => {
      const ns = `${prefix}a`;
      await sh(
        "ip",
        "link",
        "add",
        peer,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns,
      );
      await sh("ip", "addr", "add", "10.248.0.1/24", "dev", peer);
      await sh("ip", "link", "set", peer, "up");
      await sh("ip", "-n", ns, "addr", "add", "10.248.0.7/24", "dev", "eth0");
      await sh("ip", "-n", ns, "link", "set", "eth0", "up");
      await fn(path, ns, peer);
    });
  } finally {
    await run("ip", ["link", "del", peer]);
  }
}

function nsenter(ns: string, ...args: string[]): Promise<string> {
  return sh("nsenter", `--net=/var/run/netns/${ns}`, "--", ...args);
}

rootTest(
  "clone path: plumbing makes the TAP, sysctls (this netns only), routes, rule and nft tables; inspect sees them; repair re-makes a missing part; removal leaves nothing",
  () =>
    withVethNetns(async (path, ns) => {
      const hostForward = readSysctl(["net", "ipv4", "ip_forward"]);
      const got = hostKernel.inNetns(path, (s) => plumbClonePath(s, SPEC));
      assert.equal(got.mtu, 1500);
      assert.equal(
        (await nsenter(ns, "sysctl", "-n", "net.ipv4.ip_forward")).trim(),
        "1",
      );
      assert.equal(
        readSysctl(["net", "ipv4", "ip_forward"]),
        hostForward,
        "the test's own netns keeps its forwarding setting",
      );
      assert.equal(
        (await nsenter(ns, "sysctl", "-n", "net.ipv4.conf.tap0.proxy_arp"))
          .trim(),
        "1",
      );
      const routes = await ipJson<{ dst: string; dev: string }>(
        "-n",
        ns,
        "route",
        "show",
        "table",
        String(CLONE_TABLE_BASE),
      );
      assert.deepEqual(
        routes.map((r) => `${r.dst} ${r.dev}`).sort(),
        ["10.248.0.0/24 eth0", "default eth0"],
      );
      const main = await ipJson<{ dst: string; dev: string }>(
        "-n",
        ns,
        "route",
      );
      assert.ok(main.some((r) => r.dst === "10.248.0.5" && r.dev === "tap0"));
      const rules = await ipJson<{ priority: number; iif?: string }>(
        "-n",
        ns,
        "rule",
      );
      assert.ok(
        rules.some((r) =>
          r.priority === CLONE_RULE_PRIORITY_BASE && r.iif === "tap0"
        ),
      );
      const ruleset = await nsenter(ns, "nft", "list", "ruleset");
      assert.match(ruleset, /table ip vmnic_tap0/);
      assert.match(ruleset, /table netdev vmnic_tap0/);
      let st = hostKernel.inNetns(path, (s) => inspectClonePath(s, SPEC));
      assert.ok(st.wired, JSON.stringify(st));

      // A part removed by hand: inspect says which; repair makes it again.
      await sh(
        "ip",
        "-n",
        ns,
        "rule",
        "del",
        "pref",
        String(CLONE_RULE_PRIORITY_BASE),
      );
      st = hostKernel.inNetns(path, (s) => inspectClonePath(s, SPEC));
      assert.equal(st.translation.routes, false);
      const fixed = hostKernel.inNetns(path, (s) => repairClonePath(s, SPEC));
      assert.match(fixed.repaired.join("\n"), /routes/);
      assert.ok(
        hostKernel.inNetns(path, (s) => inspectClonePath(s, SPEC)).wired,
      );

      hostKernel.inNetns(path, (s) => unplumbClonePath(s, SPEC));
      assert.equal((await nsenter(ns, "nft", "list", "ruleset")).trim(), "");
      assert.equal(
        (await nsenter(ns, "sysctl", "-n", "net.ipv4.ip_forward")).trim(),
        "0",
      );
      const after = await ipJson<{ ifname: string }>("-n", ns, "link");
      assert.deepEqual(after.map((l) => l.ifname).sort(), ["eth0", "lo"]);
      assert.deepEqual(
        await ipJson(
          "-n",
          ns,
          "route",
          "show",
          "table",
          String(CLONE_TABLE_BASE),
        ),
        [],
      );
      // Idempotent.
      hostKernel.inNetns(path, (s) => unplumbClonePath(s, SPEC));
    }),
);

rootTest(
  "clone path: a plumbing that cannot be done (a TAP name taken, an IPv6 guest) leaves nothing it made; a bad batch is a typed NftError",
  () =>
    withVethNetns(async (path, ns) => {
      // The TAP name is taken: EBUSY, and the netns is as it was.
      await sh("ip", "-n", ns, "tuntap", "add", "dev", "tap0", "mode", "tap");
      assert.throws(() =>
        hostKernel.inNetns(path, (s) => plumbClonePath(s, SPEC))
      );
      assert.equal((await nsenter(ns, "nft", "list", "ruleset")).trim(), "");
      const links = await ipJson<{ ifname: string }>("-n", ns, "link");
      assert.ok(links.some((l) => l.ifname === "tap0"), "the other TAP stays");
      await sh("ip", "-n", ns, "link", "del", "tap0");

      // nft refuses (an IPv6 guest): typed, and nothing left.
      assert.throws(
        () =>
          hostKernel.inNetns(path, (s) =>
            plumbClonePath(s, {
              ...SPEC,
              guest: { address: "fd00::5", prefix: 64 },
            })),
        /IPv4/,
      );
      assert.equal((await nsenter(ns, "nft", "list", "ruleset")).trim(), "");
      assert.ok(
        !(await ipJson<{ ifname: string }>("-n", ns, "link")).some((l) =>
          l.ifname === "tap0"
        ),
      );
      assert.equal(
        (await nsenter(ns, "sysctl", "-n", "net.ipv4.ip_forward")).trim(),
        "0",
      );
      const err = hostKernel.inNetns(path, () => {
        try {
          runNft("add rule ip nosuchtable nochain drop", {
            op: "apply",
            object: "ip nosuchtable",
          });
        } catch (e) {
          return e;
        }
      });
      assert.ok(err instanceof NftError);
      assert.equal(err.op, "apply");
      assert.equal(err.object, "ip nosuchtable");
      assert.match(err.message, /^apply ip nosuchtable: /);
    }),
);
