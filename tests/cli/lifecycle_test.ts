/**
 * A VM's whole life through the `vmnic` CLI, each command its own process,
 * with iproute2 as the oracle: prepare, add 3 NICs, list/inspect/verify,
 * remove one and add it back, recovery after a simulated reboot,
 * quiesce/unquiesce, guest config, delete (twice). Plus a single-queue TAP
 * for Firecracker.
 */
import assert from "node:assert/strict";
import { rootTest, sh, tcJson } from "../support/harness.ts";
import {
  type Fixture,
  linksOf,
  makeFixture,
  vethsOnBridge,
} from "../provider/_fixture.ts";
import type { NicConfig } from "../../src/provider/types.ts";

type Json = Record<string, unknown>;

/** The keys of a plumbed NIC's config (docs/cli.md, "JSON"). */
const NIC_KEYS = [
  "id",
  "vmId",
  "index",
  "ifName",
  "tap",
  "mac",
  "network",
  "netnsPath",
  "numQueues",
  "queueSize",
  "mtu",
  "ips",
  "routes",
  "dns",
  "policy",
  "state",
  "createdAt",
].sort();

/** The keys of a `verify` verdict per NIC (docs/cli.md). */
const VERDICT_KEYS = [
  "index",
  "tap",
  "ifName",
  "state",
  "tapPresent",
  "vethPresent",
  "wired",
  "policy",
  "macOk",
  "vethUp",
  "strayAddresses",
  "host",
  "check",
].sort();

const NIC_COUNT = 3;

/** Where `tc` on a device's ingress redirects to. */
async function redirectTargets(ns: string, dev: string): Promise<string[]> {
  const filters = await tcJson<Json>(
    "-n",
    ns,
    "filter",
    "show",
    "dev",
    dev,
    "ingress",
  );
  // Every filter that redirects, to one device (the TAP's allow-list has many).
  return [
    ...new Set(
      filters.flatMap((f) =>
        ((f.options as { actions?: Json[] } | undefined)?.actions ?? [])
          .filter((a) => a.kind === "mirred" && a.mirred_action === "redirect")
          .map((a) => String(a.to_dev))
      ),
    ),
  ];
}

/** The first address of `subnet` (10.x.y.0/24 → 10.x.y.1). */
function gatewayOf(subnet: string): string {
  return subnet.replace(/\.0\/24$/, ".1");
}

/**
 * Asserts a NIC config has exactly the shape of an active NIC in
 * docs/cli.md and sensible values.
 */
function assertNicShape(fx: Fixture, nic: NicConfig, vmId: string): void {
  assert.deepEqual(Object.keys(nic).sort(), NIC_KEYS);
  assert.equal(nic.state, "active");
  assert.match(nic.id, /^\S+$/);
  assert.equal(nic.vmId, vmId);
  assert.equal(nic.ifName, `eth${nic.index}`);
  assert.equal(nic.tap, `tap${nic.index}`);
  assert.match(nic.mac ?? "", /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
  assert.equal(nic.network, fx.network);
  assert.equal(nic.netnsPath, `/var/run/netns/${fx.prefix}${vmId}`);
  assert.equal(typeof nic.numQueues, "number");
  assert.equal(typeof nic.queueSize, "number");
  assert.ok(nic.mtu !== undefined && nic.mtu >= 68, `mtu ${nic.mtu}`);
  assert.equal(nic.ips.length, 1);
  const [ip] = nic.ips;
  assert.deepEqual(Object.keys(ip).sort(), [
    "address",
    "gateway",
    "prefix",
    "version",
  ]);
  assert.equal(ip.version, 4);
  assert.equal(ip.prefix, 24);
  assert.equal(ip.gateway, gatewayOf(fx.subnet));
  assert.ok(
    ip.address.startsWith(fx.subnet.replace(/0\/24$/, "")),
    `${ip.address} in ${fx.subnet}`,
  );
  assert.equal(typeof nic.dns, "object");
  assert.ok(!Number.isNaN(Date.parse(nic.createdAt)), nic.createdAt);
}

/**
 * Asserts NIC `index` of the VM is plumbed as DESIGN.md's data path says:
 * veth without addresses, silent (addr_gen_mode none), TAP beside it with
 * vnet_hdr, the queue mode asked for, txqlen 10000, the veth's MTU, both
 * up, TC redirects both ways; the record's MAC and MTU are the veth's.
 */
async function assertPlumbed(
  ns: string,
  nic: NicConfig,
  multiQueue: boolean,
): Promise<void> {
  const links = await linksOf(ns);
  const veth = links.get(nic.ifName);
  const tap = links.get(nic.tap);
  assert.ok(veth, `${nic.ifName} in ${ns}`);
  assert.ok(tap, `${nic.tap} in ${ns}`);
  assert.equal(veth.address, nic.mac, "record MAC = veth MAC");
  assert.equal(veth.mtu, nic.mtu, "record MTU = veth MTU");
  assert.equal(veth.inet6_addr_gen_mode, "none");
  assert.equal(tap.inet6_addr_gen_mode, "none");
  const tun = tap.linkinfo as { info_kind: string; info_data: Json };
  assert.equal(tun.info_kind, "tun");
  assert.equal(tun.info_data.type, "tap");
  assert.equal(tun.info_data.pi, false);
  assert.equal(tun.info_data.vnet_hdr, true);
  assert.equal(tun.info_data.multi_queue, multiQueue);
  assert.equal(tap.txqlen, 10000);
  assert.equal(tap.mtu, veth.mtu);
  assert.ok((veth.flags as string[]).includes("UP"), `${nic.ifName} up`);
  assert.ok((tap.flags as string[]).includes("UP"), `${nic.tap} up`);
  for (const dev of [nic.ifName, nic.tap]) {
    const [a] = await sh("ip", "-n", ns, "-j", "addr", "show", "dev", dev)
      .then((s) => JSON.parse(s) as { addr_info: unknown[] }[]);
    assert.deepEqual(a.addr_info, [], `${dev} has no addresses`);
  }
  assert.deepEqual(await redirectTargets(ns, nic.ifName), [nic.tap]);
  assert.deepEqual(await redirectTargets(ns, nic.tap), [nic.ifName]);
}

function byIndex(nics: NicConfig[]): NicConfig[] {
  return [...nics].sort((a, b) => a.index - b.index);
}

rootTest(
  "cli: a VM's whole lifecycle, each command its own process",
  async () => {
    const fx = await makeFixture("lc", { octet: 201 });
    const vm = "vm1";
    const ns = `${fx.prefix}${vm}`;
    const nsPath = `/var/run/netns/${ns}`;
    try {
      // prepare: prints the netns path; a second run is a no-op that says the same.
      const first = await fx.cli(["prepare", vm], { json: false });
      assert.equal(first.code, 0, first.stderr);
      assert.equal(first.stdout.trim(), nsPath);
      assert.deepEqual(await fx.netns(), [vm]);
      assert.deepEqual(await fx.cliOk(["prepare", vm]), {
        vmId: vm,
        netnsPath: nsPath,
      });
      assert.deepEqual(await fx.netns(), [vm]);

      // add 3 NICs with 2 vCPUs.
      const added = await fx.cliOk<NicConfig[]>([
        "add",
        vm,
        "--nics",
        String(NIC_COUNT),
        "--cpu",
        "2",
      ]);
      assert.equal(added.length, NIC_COUNT);
      assert.deepEqual(added.map((n) => n.index), [0, 1, 2]);
      for (const nic of added) {
        assertNicShape(fx, nic, vm);
        assert.equal(nic.numQueues, 2);
        await assertPlumbed(ns, nic, true);
      }
      const ips = added.map((n) => n.ips[0].address);
      assert.equal(new Set(ips).size, NIC_COUNT, "distinct IPs");
      assert.equal(new Set(added.map((n) => n.mac)).size, NIC_COUNT);
      assert.deepEqual(await fx.leasedIps(), [...ips].sort());
      assert.equal((await vethsOnBridge(fx.bridge)).length, NIC_COUNT);

      // list, inspect, verify.
      const listed = await fx.cliOk<NicConfig[]>(["list", "--vm", vm]);
      assert.deepEqual(byIndex(listed), added);
      assert.deepEqual(await fx.cliOk(["inspect", added[1].id]), added[1]);
      const unknown = await fx.cli(["inspect", "no-such-nic-id"]);
      assert.equal(unknown.code, 3, unknown.stderr);
      const verified = await fx.cli(["verify", vm]);
      assert.equal(verified.code, 0, verified.stdout + verified.stderr);
      const verdict = JSON.parse(verified.stdout);
      assert.equal(verdict.ok, true);
      assert.deepEqual(verdict.problems, []);
      assert.equal(verdict.netns, true);
      assert.equal(verdict.quiesced, false);
      assert.deepEqual(verdict.nics.map((n: Json) => n.index), [0, 1, 2]);
      for (const n of verdict.nics as Json[]) {
        // docs/cli.md: a verify verdict per NIC.
        assert.deepEqual(Object.keys(n).sort(), VERDICT_KEYS);
        assert.equal(n.state, "active");
        assert.equal(n.check, "ok", "the bridge chain's CNI CHECK passed");
        assert.deepEqual((n.host as Json).bridge, fx.bridge);
        assert.deepEqual((n.host as Json).master, fx.bridge);
      }

      // remove NIC 1: its TAP and veth go, its lease and record too.
      const removed = await fx.cli(["remove", vm, "1"]);
      assert.equal(removed.code, 0, removed.stderr);
      assert.deepEqual(JSON.parse(removed.stdout), {
        vmId: vm,
        removed: [1],
        absent: [],
        warnings: [],
      });
      let links = await linksOf(ns);
      assert.ok(!links.has("tap1") && !links.has("eth1"), "tap1/eth1 gone");
      assert.ok(links.has("tap0") && links.has("eth2"), "the others stay");
      assert.deepEqual(await fx.leasedIps(), [ips[0], ips[2]].sort());
      assert.deepEqual(
        (await fx.cliOk<NicConfig[]>(["list", "--vm", vm])).map((n) => n.index)
          .sort(),
        [0, 2],
      );
      assert.equal((await fx.cli(["inspect", added[1].id])).code, 3);
      assert.equal((await vethsOnBridge(fx.bridge)).length, NIC_COUNT - 1);

      // The index is free again.
      const [again] = await fx.cliOk<NicConfig[]>([
        "add",
        vm,
        "--index",
        "1",
        "--cpu",
        "2",
      ]);
      assert.equal(again.index, 1);
      assertNicShape(fx, again, vm);
      await assertPlumbed(ns, again, true);
      const before = byIndex(await fx.cliOk<NicConfig[]>(["list", "--vm", vm]));
      assert.equal(before.length, NIC_COUNT);
      assert.equal((await fx.cli(["verify", vm])).code, 0);

      // A reboot takes the netns (and with it veths and TAPs); records stay.
      await sh("ip", "netns", "del", ns);
      assert.deepEqual(await fx.netns(), []);
      const broken = await fx.cli(["verify", vm]);
      assert.equal(broken.code, 1, "verify reports the missing netns");
      assert.equal(JSON.parse(broken.stdout).ok, false);
      const recovered = await fx.cliOk<
        { nics: NicConfig[]; rebuilt: number[]; problems: [] }
      >(["recover", vm]);
      assert.deepEqual(recovered.problems, []);
      assert.deepEqual(recovered.rebuilt, [0, 1, 2], "every veth was gone");
      assert.deepEqual(await fx.netns(), [vm], "same netns name");
      const after = byIndex(await fx.cliOk<NicConfig[]>(["list", "--vm", vm]));
      assert.deepEqual(after.map((n) => n.index), [0, 1, 2]);
      assert.deepEqual(byIndex(recovered.nics), after);
      for (const [i, nic] of after.entries()) {
        assert.equal(nic.id, before[i].id, `NIC ${i} keeps its id`);
        assert.equal(nic.tap, before[i].tap, `NIC ${i} keeps its TAP name`);
        assert.equal(nic.mac, before[i].mac, `NIC ${i} keeps its MAC`);
        assert.deepEqual(nic.ips, before[i].ips, `NIC ${i} keeps its IP`);
        assert.equal(nic.netnsPath, nsPath);
        assert.equal(nic.numQueues, 2);
        await assertPlumbed(ns, nic, true);
      }
      assert.deepEqual(
        await fx.leasedIps(),
        before.map((n) => n.ips[0].address).sort(),
      );
      const healed = await fx.cli(["verify", vm]);
      assert.equal(healed.code, 0, healed.stdout + healed.stderr);

      // quiesce: veths down; unquiesce: up again.
      assert.equal((await fx.cli(["quiesce", vm])).code, 0);
      links = await linksOf(ns);
      for (const nic of after) {
        const flags = links.get(nic.ifName)!.flags as string[];
        assert.ok(!flags.includes("UP"), `${nic.ifName} down: ${flags}`);
      }
      assert.equal((await fx.cli(["unquiesce", vm])).code, 0);
      links = await linksOf(ns);
      for (const nic of after) {
        const flags = links.get(nic.ifName)!.flags as string[];
        assert.ok(flags.includes("UP"), `${nic.ifName} up: ${flags}`);
      }

      // guest config in the three formats.
      type Guest = { files: { name: string; content: string }[] };
      const gw = gatewayOf(fx.subnet);
      const nic0 = after[0];
      const cmdline = (await fx.cliOk<Guest>([
        "guest-config",
        vm,
        "--format",
        "cmdline",
      ])).files.map((f) => f.content).join("");
      assert.match(
        cmdline,
        new RegExp(`^ip=${nic0.ips[0].address}::${gw}:255\\.255\\.255\\.0:`),
      );
      assert.match(cmdline, /:eth0:off/);
      for (const format of ["netplan", "networkd"]) {
        const text = (await fx.cliOk<Guest>([
          "guest-config",
          vm,
          "--format",
          format,
        ])).files.map((f) => f.content).join("\n");
        for (const nic of after) {
          assert.ok(text.includes(`${nic.ips[0].address}/24`), `${format} IP`);
          assert.ok(text.includes(nic.mac!), `${format} MAC`);
        }
        assert.ok(text.includes(gw), `${format} gateway`);
      }

      // delete: netns, TAPs, records and leases gone; again is fine.
      const del = await fx.cliOk<{ deleted: string[]; errors: unknown[] }>([
        "delete",
        vm,
      ]);
      assert.deepEqual(del, { deleted: [vm], errors: [], warnings: [] });
      assert.deepEqual(await fx.netns(), []);
      assert.deepEqual(await fx.cliOk(["list"]), []);
      assert.deepEqual(await fx.leasedIps(), []);
      assert.deepEqual(await vethsOnBridge(fx.bridge), []);
      const delAgain = await fx.cli(["delete", vm]);
      assert.equal(delAgain.code, 0, delAgain.stderr);
    } finally {
      await fx.cleanup();
    }
  },
);

rootTest("cli: one vCPU gives a single-queue TAP (Firecracker)", async () => {
  const fx = await makeFixture("sq", { octet: 202 });
  const vm = "vm2";
  try {
    const [nic] = await fx.cliOk<NicConfig[]>(["add", vm]);
    assertNicShape(fx, nic, vm);
    assert.equal(nic.numQueues, 1);
    await assertPlumbed(`${fx.prefix}${vm}`, nic, false);
    assert.deepEqual(await fx.cliOk(["delete", vm]), {
      deleted: [vm],
      errors: [],
      warnings: [],
    });
    assert.deepEqual(await fx.netns(), []);
  } finally {
    await fx.cleanup();
  }
});
