/**
 * A real guest on the TAP: vmnic gives a VM its NIC through the CLI, QEMU
 * boots Debian's kernel with a busybox initramfs (scripts/build_guest.ts)
 * inside the VM's netns on that TAP, and traffic flows both ways between
 * the guest and the CNI bridge's gateway in the test's own (throwaway) host
 * netns. NICs are hot-added and removed beside the running guest, and
 * `delete` leaves nothing behind. A second test runs a multi-queue TAP with
 * two vCPUs.
 *
 * Runs under TCG unless `VMNIC_E2E_ACCEL=kvm`; the guest is built into
 * `$VMNIC_E2E_CACHE` (default /var/cache/vmnic-e2e) from installed Debian
 * packages (`deno task guest` installs them).
 */
import assert from "node:assert/strict";
import { buildGuest, type GuestImage } from "../../scripts/build_guest.ts";
import {
  type Fixture,
  linksOf,
  makeFixture,
  vethsOnBridge,
} from "../provider/_fixture.ts";
import type { NicConfig } from "../../src/provider/types.ts";
import type { HvArgs } from "../../src/provider/hv_args.ts";
import { ipJson, IS_ROOT, rootTest, run } from "../support/harness.ts";
import { chooseAccel, QemuGuest, qemuMissing } from "./_qemu.ts";

/** Boot to the READY marker; TCG on a busy 2-core host takes 10-40 s. */
const BOOT_TIMEOUT_MS = 150_000;
/** The guest's own 3 pings of its gateway, after READY. */
const GW_PING_TIMEOUT_MS = 60_000;

const accel = chooseAccel();

/** The guest, or why the guest tests are skipped. */
const guest: { image: GuestImage } | { skip: string } = await (async () => {
  if (!IS_ROOT) return { skip: "needs root" };
  const missing = await qemuMissing();
  if (missing) return { skip: `${missing} (deno task guest installs it)` };
  try {
    // No install here: the tests run in a netns without a route out.
    return { image: await buildGuest({ install: false, log: () => {} }) };
  } catch (e) {
    return {
      skip: `guest cannot be built: ${(e as Error).message} (deno task guest)`,
    };
  }
})();

/** A test that boots a guest; skipped, saying why, without QEMU or a guest. */
function guestTest(
  name: string,
  fn: (image: GuestImage) => Promise<void>,
): void {
  if ("skip" in guest) {
    if (!IS_ROOT) return rootTest(name, () => {});
    if (Deno.env.get("CI") === "true") {
      // CI installs QEMU and the guest packages: a skip there would hide a gap.
      const reason = guest.skip;
      Deno.test(name, () => {
        throw new Error(`guest required under CI=true: ${reason}`);
      });
      return;
    }
    console.error(`vmnic e2e: guest tests skipped: ${guest.skip}`);
    Deno.test({
      name: `${name} (skipped: ${guest.skip})`,
      ignore: true,
      fn() {},
    });
    return;
  }
  const { image } = guest;
  rootTest(`${name} [${accel}]`, () => fn(image));
}

/** `vmnic guest-config <vm> --format cmdline`: the kernel `ip=` parameter. */
async function ipParam(fx: Fixture, vm: string): Promise<string> {
  const r = await fx.cli(["guest-config", vm, "--format", "cmdline"], {
    json: false,
  });
  assert.equal(r.code, 0, r.stderr);
  const param = r.stdout.trim();
  assert.match(param, /^ip=\S+$/);
  return param;
}

/** Pings `address` from the host netns (the bridge's side); true on a reply. */
async function hostPings(address: string): Promise<boolean> {
  const r = await run("ping", ["-c", "3", "-W", "3", address]);
  return r.code === 0;
}

/** Boots the guest on `nic`, waits for it and checks traffic both ways. */
async function bootAndPing(
  fx: Fixture,
  vm: string,
  nic: NicConfig,
  image: GuestImage,
  vcpus: number,
): Promise<QemuGuest> {
  // Launched with exactly what vmnic prints for QEMU.
  const hv = await fx.cliOk<HvArgs>(["hv-args", vm, "--for", "qemu"]);
  assert.deepEqual(hv.launch.nsenter, [
    "nsenter",
    `--net=${nic.netnsPath}`,
    "--",
  ]);
  assert.ok(
    hv.args.some((a) => a.includes(`ifname=${nic.tap}`)),
    hv.args.join(" "),
  );
  assert.ok(
    hv.args.some((a) => a.includes(`mac=${nic.mac}`)),
    hv.args.join(" "),
  );
  if (nic.numQueues > 1) {
    assert.ok(
      hv.args.some((a) => a.includes(`queues=${nic.numQueues}`)) &&
        hv.args.some((a) => a.includes("mq=on")),
      hv.args.join(" "),
    );
  }
  const qemu = QemuGuest.start({
    image,
    hv,
    vcpus,
    ipParam: await ipParam(fx, vm),
    accel,
  });
  const address = nic.ips[0].address;
  const ready = await qemu.waitFor(/VMNIC-GUEST-READY (\S+)/, BOOT_TIMEOUT_MS);
  const bootS = ((performance.now() - qemu.startedAt) / 1000).toFixed(1);
  console.log(
    `  ${vm}: guest ready in ${bootS} s under ${accel.toUpperCase()}`,
  );
  assert.equal(ready[1], address, "the guest took the IP vmnic leased");
  const queues = qemu.serial.match(/VMNIC-GUEST-QUEUES (\d+)/);
  assert.equal(Number(queues?.[1]), nic.numQueues, "guest queue pairs");
  // The guest pings its gateway (the bridge) right after READY: guest -> host.
  const gw = await qemu.waitFor(
    /VMNIC-GUEST-GW-PING (ok|fail)/,
    GW_PING_TIMEOUT_MS,
  );
  assert.equal(gw[1], "ok", `guest pinged ${nic.ips[0].gateway}`);
  // host -> guest, through the bridge, the veth, TC and the TAP.
  assert.ok(await hostPings(address), `host pings the guest at ${address}`);
  return qemu;
}

guestTest(
  "e2e: a QEMU guest on the vmnic TAP reaches the CNI network and back; NICs hot-plug beside it; delete leaves nothing",
  async (image) => {
    const fx = await makeFixture("gq", { octet: 241 });
    const vm = "vm";
    const ns = `${fx.prefix}${vm}`;
    let qemu: QemuGuest | undefined;
    try {
      const [nic] = await fx.cliOk<NicConfig[]>(["add", vm, "--cpu", "1"]);
      assert.equal(nic.numQueues, 1);
      qemu = await bootAndPing(fx, vm, nic, image, 1);

      // Hot-plug beside the running guest: a second NIC comes and goes while
      // QEMU holds tap0, and the guest's own NIC keeps working.
      const [nic1] = await fx.cliOk<NicConfig[]>(["add", vm, "--index", "1"]);
      assert.equal(nic1.tap, "tap1");
      let links = await linksOf(ns);
      assert.ok(links.has("tap1") && links.has("eth1"), "tap1 + eth1 added");
      assert.equal((await vethsOnBridge(fx.bridge)).length, 2);
      const removed = await fx.cli(["remove", vm, "1"]);
      assert.equal(removed.code, 0, removed.stderr);
      links = await linksOf(ns);
      assert.ok(!links.has("tap1") && !links.has("eth1"), "tap1 + eth1 gone");
      assert.ok(links.has("tap0") && links.has("eth0"), "NIC 0 untouched");
      assert.deepEqual(await fx.leasedIps(), [nic.ips[0].address]);
      assert.ok(qemu.running, "QEMU survived the hot-plug");
      assert.ok(
        await hostPings(nic.ips[0].address),
        "guest still reachable after the hot-plug",
      );

      await qemu.kill();
      const del = await fx.cliOk(["delete", vm]);
      assert.deepEqual(del, { deleted: [vm], errors: [], warnings: [] });
      assert.deepEqual(await fx.netns(), [], "no netns with the prefix");
      assert.deepEqual(await fx.cliOk(["list", "--vm", vm]), [], "no record");
      assert.deepEqual(await fx.leasedIps(), [], "no host-local lease");
      assert.deepEqual(await vethsOnBridge(fx.bridge), [], "no host veth");
      const hostTaps = (await ipJson("link")).map((l) => String(l.ifname))
        .filter((n) => /^tap\d/.test(n));
      assert.deepEqual(hostTaps, [], "no TAP in the host netns");
    } finally {
      await qemu?.kill();
      await fx.cleanup();
    }
  },
);

guestTest(
  "e2e: a 2-vCPU QEMU guest on a multi-queue vmnic TAP (queues=2, mq=on) boots and passes traffic",
  async (image) => {
    const fx = await makeFixture("gm", { octet: 242 });
    const vm = "vm2";
    const ns = `${fx.prefix}${vm}`;
    let qemu: QemuGuest | undefined;
    try {
      const [nic] = await fx.cliOk<NicConfig[]>(["add", vm, "--cpu", "2"]);
      assert.equal(nic.numQueues, 2);
      const tap = (await linksOf(ns)).get(nic.tap);
      const info = (tap?.linkinfo as { info_data?: Record<string, unknown> })
        ?.info_data;
      assert.equal(info?.multi_queue, true, "TAP is multi_queue");
      qemu = await bootAndPing(fx, vm, nic, image, 2);
      await qemu.kill();
      assert.deepEqual(await fx.cliOk(["delete", vm]), {
        deleted: [vm],
        errors: [],
        warnings: [],
      });
      assert.deepEqual(await fx.netns(), []);
      assert.deepEqual(await fx.leasedIps(), []);
    } finally {
      await qemu?.kill();
      await fx.cleanup();
    }
  },
);
