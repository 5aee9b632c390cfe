/**
 * The carrier reaction with a real hypervisor: a QEMU guest (the guest of
 * tests/e2e, under TCG unless `VMNIC_E2E_ACCEL=kvm`) started the way
 * `vmnic hv-args` says on a quiesced VM gets it unquiesced (its TAP has a
 * carrier once QEMU opens it) and reaches the bridge; QEMU stopped, the VM
 * is quiesced within a bounded time.
 *
 * Skipped, saying why, without root, QEMU or a guest (`deno task guest`).
 */
import assert from "node:assert/strict";
import { buildGuest, type GuestImage } from "../../scripts/build_guest.ts";
import { IS_ROOT, rootTest, run } from "../support/harness.ts";
import { chooseAccel, QemuGuest, qemuMissing } from "../e2e/_qemu.ts";
import {
  isQuiesced,
  REACTION_BOUND_MS,
  waitFor,
  withWatchEnv,
} from "./_support.ts";

/** Boot to the READY marker; TCG on a busy 2-core host takes 10-40 s. */
const BOOT_TIMEOUT_MS = 150_000;
const accel = chooseAccel();

const guest: { image: GuestImage } | { skip: string } = await (async () => {
  if (!IS_ROOT) return { skip: "needs root" };
  const missing = await qemuMissing();
  if (missing) return { skip: `${missing} (deno task guest installs it)` };
  try {
    return { image: await buildGuest({ install: false, log: () => {} }) };
  } catch (e) {
    return {
      skip: `guest cannot be built: ${(e as Error).message} (deno task guest)`,
    };
  }
})();

const name =
  "watcher: a QEMU guest started unquiesces its VM; QEMU stopped, the VM is quiesced";
if ("skip" in guest) {
  console.error(`vmnic watcher: QEMU test skipped: ${guest.skip}`);
  Deno.test({
    name: `${name} (skipped: ${guest.skip})`,
    ignore: true,
    fn() {},
  });
} else {
  const { image } = guest;
  rootTest(`${name} [${accel}]`, async () => {
    let qemu: QemuGuest | undefined;
    await withWatchEnv("wq", {
      octet: 175,
      watch: { carrier: "repair" },
      before: async (p) => {
        await p.add("vm1", { cpu: 1 });
        // Stopped (quiesced): the watcher brings it up once QEMU holds
        // its TAP, before the guest has booted.
        await p.quiesce("vm1");
      },
    }, async ({ provider, watchEvents }) => {
      const [nic] = await provider.list({ vmId: "vm1" });
      const hv = await provider.hvArgs("vm1", "qemu");
      const [cmdline] = await provider.guestConfig("vm1", "cmdline");
      qemu = QemuGuest.start({
        image,
        hv,
        vcpus: 1,
        ipParam: cmdline.content.trim(),
        accel,
      });
      await waitFor(
        "VM unquiesced once QEMU opened its TAP",
        async () => !(await isQuiesced(provider, "vm1")),
        REACTION_BOUND_MS * 2,
      );
      const ready = await qemu.waitFor(
        /VMNIC-GUEST-READY (\S+)/,
        BOOT_TIMEOUT_MS,
      );
      assert.equal(ready[1], nic.ips[0].address);
      // Its network works: the host reaches it through the bridge.
      const ping = await run("ping", ["-c", "3", "-W", "3", ready[1]]);
      assert.equal(ping.code, 0, ping.stdout + ping.stderr);

      const stoppedAt = performance.now();
      await qemu.kill();
      const { ms } = await waitFor(
        "VM quiesced after QEMU stopped",
        () => isQuiesced(provider, "vm1"),
      );
      console.log(
        `  QEMU killed -> quiesced in ${
          (performance.now() - stoppedAt).toFixed(0)
        } ms (seen after ${ms.toFixed(0)} ms of polling)`,
      );
      const v = await provider.verify("vm1", { check: false });
      assert.equal(v.ok, true, v.problems.join("; "));
      assert.equal(v.quiesced, true);
      assert.deepEqual((await watchEvents()).map((e) => [e.op, e.outcome]), [
        ["watch:carrier-back", "ok"],
        ["watch:carrier-lost", "ok"],
      ]);
    }).finally(() => qemu?.kill());
  });
}
