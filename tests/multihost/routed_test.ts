/**
 * Many hosts without a cluster service (the routed recipe of
 * docs/multihost.md): two "hosts" (each its own namespace, bridge and
 * vmnic install) on an underlay of veths; each host's conflist has its own
 * host-local range with its bridge as that range's gateway, and routes to
 * the other host's range; each host routes the other's range to it over
 * the underlay. Real parts: Debian's CNI plugins and QEMU guests (TCG).
 *
 * Proves: VMs on different hosts have addresses from their host's range
 * and their guests reach each other across hosts; a delete releases the
 * host-local lease; vmnic killed (SIGKILL) mid-add on one host, then that
 * host's gc, leaves no lease and nothing on that host, the other host
 * untouched; one host's gc (even `--include-unknown`) never touches the
 * other's VMs.
 */
import assert from "node:assert/strict";
import type { NicConfig, VerifyResult } from "../../src/provider/types.ts";
import { Cluster, ROUTED_NET, routedSubnet } from "./_cluster.ts";
import {
  boot,
  clusterTest,
  guestPings,
  type QemuGuest,
  ready,
} from "./_guests.ts";

/** Exit status of a process killed by SIGKILL. */
const SIGKILL_STATUS = 137;

await clusterTest(
  "multihost routed: two hosts with their own host-local ranges, routed over the underlay; guests reach each other, delete and gc release leases, a kill -9 mid-add is cleaned up by that host's gc alone",
  [],
  async (image) => {
    const t0 = performance.now();
    const stamp = (what: string) =>
      console.log(
        `  ${((performance.now() - t0) / 1000).toFixed(1)} s: ${what}`,
      );
    const cluster = await Cluster.start({
      tag: "mr",
      hosts: 2,
      recipe: "routed",
    });
    const guests: QemuGuest[] = [];
    try {
      const [a, b] = cluster.hosts;
      const [[nicA], [nicB]] = await Promise.all([
        a.cliOk<NicConfig[]>(["add", "vma"]),
        b.cliOk<NicConfig[]>(["add", "vmb"]),
      ]);
      stamp(
        `added vma (${nicA.ips[0]?.address}), vmb (${nicB.ips[0]?.address})`,
      );
      for (const [i, nic] of [nicA, nicB].entries()) {
        const range = routedSubnet(i).replace(/\.0\/24$/, ".");
        assert.ok(nic.ips[0].address.startsWith(range), nic.ips[0].address);
        assert.equal(nic.ips[0].gateway, `${range}1`);
        assert.deepEqual(
          nic.routes?.map((r) => r.dst),
          [routedSubnet(1 - i)],
          "a route to the other host's range",
        );
      }
      assert.deepEqual(await a.hostLocalLeases(), [nicA.ips[0].address]);
      assert.deepEqual(await b.hostLocalLeases(), [nicB.ips[0].address]);

      guests.push(await boot(a, "vma", image), await boot(b, "vmb", image));
      // No default route: `ip=` carries none, so the guests take their
      // NIC's routes as netplan or networkd from `vmnic guest-config` would
      // (via the route's gw, else the NIC's gateway).
      await Promise.all([
        ready(guests[0], nicA.ips[0].address, { gatewayPing: false }),
        ready(guests[1], nicB.ips[0].address, { gatewayPing: false }),
      ]);
      for (const [g, nic] of [[guests[0], nicA], [guests[1], nicB]] as const) {
        for (const r of nic.routes ?? []) {
          const via = r.gw ?? nic.ips[0].gateway;
          const add = await g.sh(`ip route add ${r.dst} via ${via}`);
          assert.equal(add.code, 0, add.out);
        }
        assert.ok(
          await guestPings(g, nic.ips[0].gateway!),
          `guest ${nic.ips[0].address} pings its host's bridge`,
        );
      }
      stamp("both guests up, each pinged its host's bridge");
      assert.ok(
        await guestPings(guests[0], nicB.ips[0].address),
        "guest on host a pings the guest on host b (routed)",
      );
      assert.ok(
        await guestPings(guests[1], nicA.ips[0].address),
        "guest on host b pings the guest on host a (routed)",
      );
      stamp("guests ping each other across hosts");

      // ---- delete on host a releases its lease; host b untouched
      await guests[0].kill();
      await a.cliOk(["delete", "vma"]);
      assert.deepEqual(await a.hostLocalLeases(), []);
      assert.deepEqual(await a.leftovers(), []);
      assert.deepEqual(await b.hostLocalLeases(), [nicB.ips[0].address]);

      // ---- kill -9 mid-add on host a, then host a's gc
      const killed = await a.cli(["add", "vmk"], {
        env: { VMNIC_FAULT_POINT: "add:cni-added" },
      });
      assert.ok(
        killed.signal === "SIGKILL" || killed.code === SIGKILL_STATUS,
        `add killed: exit ${killed.code} ${killed.signal}: ${killed.stderr}`,
      );
      assert.equal((await a.hostLocalLeases()).length, 1, "its lease is held");
      const gc = await a.cliOk<{ collected: string[] }>(["gc", "--active="]);
      assert.deepEqual(gc.collected, ["vmk"]);
      assert.deepEqual(await a.hostLocalLeases(), []);
      assert.deepEqual(await a.leftovers(), [], "nothing left on host a");
      const vb = await b.cliOk<VerifyResult>(["verify", "vmb"]);
      assert.ok(vb.ok, vb.problems.join("; "));
      assert.ok(
        await guestPings(guests[1], `${ROUTED_NET}.1.1`),
        "guest b still reaches host a's bridge",
      );
      stamp("delete and kill -9 + gc on host a: no lease, nothing left");

      // ---- one host's gc never touches another's VMs
      const [nicA2] = await a.cliOk<NicConfig[]>(["add", "vma2"]);
      await guests[1].kill();
      const gcB = await b.cliOk<{ collected: string[] }>([
        "gc",
        "--active=",
        "--include-unknown",
      ]);
      assert.deepEqual(gcB.collected, ["vmb"]);
      assert.deepEqual(await b.hostLocalLeases(), []);
      assert.deepEqual(await b.leftovers(), []);
      assert.deepEqual(await a.hostLocalLeases(), [nicA2.ips[0].address]);
      const va2 = await a.cliOk<VerifyResult>(["verify", "vma2"]);
      assert.ok(va2.ok, va2.problems.join("; "));
      const gcA = await a.cliOk<{ collected: string[] }>([
        "gc",
        "--active=",
        "--include-unknown",
      ]);
      assert.deepEqual(gcA.collected, ["vma2"]);
      assert.deepEqual(await a.hostLocalLeases(), []);
      assert.deepEqual(await a.leftovers(), []);
      stamp("each host's gc collected its own VMs only");
    } finally {
      for (const g of guests) await g.kill();
      await cluster.stop();
    }
  },
);
