/**
 * Many hosts, one L2 network, one address space (issue 14, the dhcp recipe
 * of docs/multihost.md): two "hosts" (each its own namespace, bridge and
 * vmnic install) joined by a VXLAN overlay across an underlay of veths;
 * Kea serves the overlay's addresses with its leases in PostgreSQL; each
 * host runs CNI's `dhcp` daemon, which vmnic's conflists reach through
 * `ipam.daemonSocketPath`. Real parts throughout: Debian's Kea,
 * PostgreSQL, CNI plugins and QEMU guests (TCG).
 *
 * Proves:
 * - VMs on different hosts get distinct addresses from Kea (one lease each,
 *   with the NIC's MAC and the plugin's client id) and their guests reach
 *   each other and the gateway across hosts;
 * - a NIC keeps its lease across renewals while its guest runs (the dhcp
 *   daemon renews from the VM's netns through vmnic's TC path; Kea's
 *   expiry moves on), `verify` is clean, and a DHCP client in the guest
 *   gets nothing and changes nothing; a VM quiesced past T2 keeps
 *   renewing (its veth stays up) and its delete is prompt;
 * - a VM deleted on one host releases its lease in Kea;
 * - vmnic killed (SIGKILL) mid-add on one host, then that host's gc: no
 *   lease left in Kea, nothing left on that host, the other host untouched;
 * - one host's gc (even `--include-unknown`) never touches the other's VMs.
 *
 * Runs under TCG unless `VMNIC_E2E_ACCEL=kvm`; the guest is built into
 * `$VMNIC_E2E_CACHE` (`deno task guest` installs what it needs).
 */
import assert from "node:assert/strict";
import type { NicConfig, VerifyResult } from "../../src/provider/types.ts";
import {
  Cluster,
  type KeaLease,
  NETWORK,
  OVERLAY_NET,
  pingFrom,
  TEST_TIMES,
  waitUntil,
} from "./_cluster.ts";
import {
  boot,
  clusterTest,
  guestPings,
  type QemuGuest,
  ready,
} from "./_guests.ts";

/** Renewals to wait for while the guests run. */
const RENEWALS = 2;
/** Time for them: T1 apart, plus generous slack for a loaded machine. */
const RENEWALS_TIMEOUT_MS = (RENEWALS + 1) * TEST_TIMES.renew * 1000 + 30_000;
/** Exit status of a process killed by SIGKILL. */
const SIGKILL_STATUS = 137;
const NET = NETWORK.dhcp;
/** What the test drives besides QEMU. */
const TOOLS = ["kea-dhcp4", "kea-admin", "psql", "pg_isready"];

/** The lease of a client id, or undefined. */
function leaseOf(leases: KeaLease[], clientId: string): KeaLease | undefined {
  return leases.find((l) => l.clientId === clientId);
}

function describeLeases(leases: KeaLease[]): string {
  return leases.map((l) =>
    `${l.address} ${l.mac} ${l.clientId} state ${l.state}`
  ).join("; ") || "none";
}

await clusterTest(
  "multihost dhcp: two hosts on a VXLAN overlay share Kea's address space (PostgreSQL leases) through CNI's dhcp daemon; guests reach each other, leases renew, delete and gc release them, a kill -9 mid-add is cleaned up by that host's gc alone",
  TOOLS,
  async (image) => {
    const t0 = performance.now();
    const stamp = (what: string) =>
      console.log(
        `  ${((performance.now() - t0) / 1000).toFixed(1)} s: ${what}`,
      );
    const cluster = await Cluster.start({
      tag: "mh",
      hosts: 2,
      recipe: "dhcp",
    });
    const guests: QemuGuest[] = [];
    try {
      const [a, b] = cluster.hosts;
      const [da, db] = cluster.daemons;
      stamp("cluster up (underlay, overlay, PostgreSQL, Kea, dhcp daemons)");

      // ---- one address space: a VM on each host, distinct leases
      const [[nicA], [nicB]] = await Promise.all([
        a.cliOk<NicConfig[]>(["add", "vma"]),
        b.cliOk<NicConfig[]>(["add", "vmb"]),
      ]);
      stamp(
        `added vma (${nicA.ips[0]?.address}), vmb (${nicB.ips[0]?.address})`,
      );
      for (const nic of [nicA, nicB]) {
        assert.equal(nic.ips.length, 1);
        assert.ok(
          nic.ips[0].address.startsWith(`${OVERLAY_NET}.`),
          nic.ips[0].address,
        );
        assert.equal(nic.ips[0].gateway, Cluster.GATEWAY);
      }
      assert.notEqual(nicA.ips[0].address, nicB.ips[0].address);
      const cidA = await a.clientIdOf("vma", NET);
      const cidB = await b.clientIdOf("vmb", NET);
      const first = await cluster.leases();
      assert.equal(first.length, 2, describeLeases(first));
      for (const [nic, cid] of [[nicA, cidA], [nicB, cidB]] as const) {
        const l = leaseOf(first, cid);
        assert.ok(l, `Kea holds ${cid}: ${describeLeases(first)}`);
        assert.equal(l.address, nic.ips[0].address);
        assert.equal(l.mac, nic.mac);
        assert.equal(l.state, 0);
      }

      // ---- a stopped VM (quiesced while the guests boot) keeps its lease
      await a.cliOk(["add", "vmq"]);
      const cidQ = await a.clientIdOf("vmq", NET);
      await a.cliOk(["quiesce", "vmq"]);
      const quiescedAt = performance.now();

      // ---- real guests, one per host, across the overlay
      guests.push(await boot(a, "vma", image), await boot(b, "vmb", image));
      await Promise.all([
        ready(guests[0], nicA.ips[0].address),
        ready(guests[1], nicB.ips[0].address),
      ]);
      stamp("both guests up, each pinged the gateway on the services node");
      assert.ok(
        await guestPings(guests[0], nicB.ips[0].address),
        "guest on host a pings the guest on host b",
      );
      assert.ok(
        await guestPings(guests[1], nicA.ips[0].address),
        "guest on host b pings the guest on host a",
      );
      stamp("guests ping each other across hosts");

      // ---- renewals while the guests run: through vmnic's TC path
      await waitUntil(
        `${RENEWALS} renewals of each lease`,
        async () =>
          (await da.count(cidA, "lease renewed")) >= RENEWALS &&
          (await db.count(cidB, "lease renewed")) >= RENEWALS,
        RENEWALS_TIMEOUT_MS,
        async () => `host a: ${await da.text()}\nhost b: ${await db.text()}`,
      );
      const renewed = await cluster.leases();
      for (const [nic, cid] of [[nicA, cidA], [nicB, cidB]] as const) {
        const before = leaseOf(first, cid)!;
        const now = leaseOf(renewed, cid);
        assert.ok(now, `${cid} still leased: ${describeLeases(renewed)}`);
        assert.equal(now.address, nic.ips[0].address, "the same address");
        assert.equal(now.state, 0);
        assert.ok(
          now.expire >= before.expire + RENEWALS * TEST_TIMES.renew - 1,
          `Kea's expiry moved on with the renewals (${before.expire} -> ${now.expire})`,
        );
      }
      // One lease per NIC in each daemon: nothing asked it again (verify
      // runs no CHECK on a dhcp chain).
      for (const host of [a, b]) {
        const v = await host.cliOk<VerifyResult>([
          "verify",
          host === a ? "vma" : "vmb",
        ]);
        assert.ok(v.ok, `${host.name}: ${v.problems.join("; ")}`);
        assert.equal(v.nics[0].check, "skipped");
        assert.equal(v.nics[0].policy, "ok");
      }
      assert.equal(await da.count(cidA, "acquiring lease"), 1);
      assert.equal(await db.count(cidB, "acquiring lease"), 1);
      assert.ok(
        await guestPings(guests[0], nicB.ips[0].address),
        "still reachable after the renewals",
      );
      stamp(`${RENEWALS}+ renewals each; verify clean`);

      // vmq, quiesced past T2: its veth stayed up and the daemon renewed
      // through it (down, renewals would fail, and past T2 the daemon would
      // raise the veth itself; a DEL would wait out its retries).
      await waitUntil(
        `vmq quiesced past T2, ${RENEWALS} renewals`,
        async () =>
          performance.now() - quiescedAt >
            (TEST_TIMES.rebind + TEST_TIMES.renew) * 1000 &&
          (await da.count(cidQ, "lease renewed")) >= RENEWALS,
        RENEWALS_TIMEOUT_MS,
        () => da.text(),
      );
      const vq = await a.cliOk<VerifyResult>(["verify", "vmq"]);
      assert.ok(vq.ok && vq.quiesced, vq.problems.join("; "));
      assert.equal(vq.nics[0].vethUp, true, "its veth stays up");
      assert.equal(vq.nics[0].policy, "ok", "nothing redirected to the TAP");
      assert.equal(leaseOf(await cluster.leases(), cidQ)?.state, 0);
      await a.cliOk(["unquiesce", "vmq"]);
      const vu = await a.cliOk<VerifyResult>(["verify", "vmq"]);
      assert.ok(vu.ok && !vu.quiesced, vu.problems.join("; "));
      await a.cliOk(["quiesce", "vmq"]);
      const delStart = performance.now();
      await a.cliOk(["delete", "vmq"]);
      const delMs = performance.now() - delStart;
      assert.ok(delMs < 20_000, `delete of a quiesced VM took ${delMs} ms`);
      assert.equal(leaseOf(await cluster.leases(), cidQ), undefined);
      stamp("a VM quiesced past T2 kept renewing; its delete released it");

      // ---- the daemon owns DHCP: a client in the guest gets nothing
      const beforeGuestDhcp = await cluster.leases();
      const udhcpc = await guests[0].sh(
        "udhcpc -i eth0 -n -q -t 2 -T 1 -s /bin/true >/dev/null 2>&1",
      );
      assert.notEqual(udhcpc.code, 0, "udhcpc in the guest got no lease");
      const afterGuestDhcp = await cluster.leases();
      assert.deepEqual(
        afterGuestDhcp.map((l) => [l.address, l.mac, l.clientId, l.state]),
        beforeGuestDhcp.map((l) => [l.address, l.mac, l.clientId, l.state]),
        "the guest's DHCP changed no lease",
      );
      assert.ok(await guestPings(guests[0], nicB.ips[0].address));
      stamp("a DHCP client in the guest got nothing and changed nothing");

      // ---- delete on host a releases its lease; host b untouched
      await guests[0].kill();
      assert.deepEqual(await a.cliOk(["delete", "vma"]), {
        deleted: ["vma"],
        errors: [],
        warnings: [],
      });
      const afterDelete = await cluster.leases();
      assert.equal(
        leaseOf(afterDelete, cidA),
        undefined,
        `vma's lease released: ${describeLeases(afterDelete)}`,
      );
      assert.ok(leaseOf(afterDelete, cidB), "vmb's lease stays");
      assert.deepEqual(await a.leftovers(), []);
      stamp("delete released vma's lease in Kea");

      // ---- kill -9 mid-add on host a, then host a's gc
      const killed = await a.cli(["add", "vmk"], {
        env: { VMNIC_FAULT_POINT: "add:cni-added" },
      });
      assert.ok(
        killed.signal === "SIGKILL" || killed.code === SIGKILL_STATUS,
        `add killed: exit ${killed.code} ${killed.signal}: ${killed.stderr}`,
      );
      const cidK = await a.clientIdOf("vmk", NET);
      assert.ok(
        leaseOf(await cluster.leases(), cidK),
        "the killed add's lease is in Kea (the daemon holds it)",
      );
      const gc = await a.cliOk<{ collected: string[] }>(["gc", "--active="]);
      assert.deepEqual(gc.collected, ["vmk"]);
      const afterGc = await cluster.leases();
      assert.equal(
        leaseOf(afterGc, cidK),
        undefined,
        `no lease left for vmk: ${describeLeases(afterGc)}`,
      );
      assert.deepEqual(await a.leftovers(), [], "nothing left on host a");
      // Host b untouched: its VM, its lease, its guest.
      const vb = await b.cliOk<VerifyResult>(["verify", "vmb"]);
      assert.ok(vb.ok, vb.problems.join("; "));
      assert.deepEqual(
        leaseOf(afterGc, cidB)?.address,
        nicB.ips[0].address,
      );
      assert.ok(await pingFrom(cluster.svc, nicB.ips[0].address));
      stamp("kill -9 mid-add, then host a's gc: no lease, nothing left");

      // ---- one host's gc never touches another's VMs
      const [nicA2] = await a.cliOk<NicConfig[]>(["add", "vma2"]);
      const cidA2 = await a.clientIdOf("vma2", NET);
      await guests[1].kill();
      const gcB = await b.cliOk<{ collected: string[] }>([
        "gc",
        "--active=",
        "--include-unknown",
      ]);
      assert.deepEqual(gcB.collected, ["vmb"]);
      const afterGcB = await cluster.leases();
      assert.equal(leaseOf(afterGcB, cidB), undefined, "vmb's lease released");
      assert.equal(leaseOf(afterGcB, cidA2)?.address, nicA2.ips[0].address);
      const va2 = await a.cliOk<VerifyResult>(["verify", "vma2"]);
      assert.ok(va2.ok, va2.problems.join("; "));
      assert.deepEqual(await a.leftovers(["vma2"]), []);
      assert.deepEqual(await b.leftovers(), []);
      const gcA = await a.cliOk<{ collected: string[] }>([
        "gc",
        "--active=",
        "--include-unknown",
      ]);
      assert.deepEqual(gcA.collected, ["vma2"]);
      assert.deepEqual(await cluster.leases(), [], "no lease left in Kea");
      assert.deepEqual(await a.leftovers(), []);
      stamp("each host's gc collected its own VMs only; Kea is empty");
    } finally {
      for (const g of guests) await g.kill();
      await cluster.stop();
    }
  },
);
