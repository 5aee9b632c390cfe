/**
 * QEMU guests for the multihost tests: the e2e guest (Debian's kernel and
 * busybox, scripts/build_guest.ts) booted on a host's VM with what that
 * host's vmnic prints (`hv-args`, `guest-config`), with a shell on its
 * console; and the test wrapper that skips, saying why, when a part is
 * missing (and fails under CI=true, which installs them all).
 *
 * @module
 */
import assert from "node:assert/strict";
import { buildGuest, type GuestImage } from "../../scripts/build_guest.ts";
import type { HvArgs } from "../../src/provider/hv_args.ts";
import { IS_ROOT, rootTest, run } from "../support/harness.ts";
import { chooseAccel, QemuGuest, qemuMissing } from "../e2e/_qemu.ts";
import type { VmnicHost } from "./_cluster.ts";

/** Boot to READY; TCG on a busy 2-core host takes 10-40 s. */
const BOOT_TIMEOUT_MS = 150_000;
/** The guest's own pings of its gateway, after READY. */
const GW_PING_TIMEOUT_MS = 60_000;

/** The accelerator: TCG unless `VMNIC_E2E_ACCEL=kvm`. */
export const accel = chooseAccel();

/** The guest image, or why the tests cannot run (`tools` must be on PATH). */
async function guestOrSkip(
  tools: readonly string[],
): Promise<{ image: GuestImage } | { skip: string }> {
  if (!IS_ROOT) return { skip: "needs root" };
  const missing = await qemuMissing();
  if (missing) return { skip: `${missing} (deno task guest installs it)` };
  for (const bin of tools) {
    if ((await run("sh", ["-c", `command -v ${bin}`])).code !== 0) {
      return { skip: `${bin} not installed (deno task test installs it)` };
    }
  }
  try {
    return { image: await buildGuest({ install: false, log: () => {} }) };
  } catch (e) {
    return {
      skip: `guest cannot be built: ${(e as Error).message} (deno task guest)`,
    };
  }
}

/**
 * A test that boots guests; skipped, saying why, without QEMU, the guest
 * or one of `tools`.
 */
export async function clusterTest(
  name: string,
  tools: readonly string[],
  fn: (image: GuestImage) => Promise<void>,
): Promise<void> {
  const guest = await guestOrSkip(tools);
  if ("skip" in guest) {
    if (!IS_ROOT) return rootTest(name, () => {});
    if (Deno.env.get("CI") === "true") {
      const reason = guest.skip;
      Deno.test(name, () => {
        throw new Error(`required under CI=true: ${reason}`);
      });
      return;
    }
    console.error(`vmnic multihost: skipped: ${guest.skip}`);
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

/** Boots a guest on a host's VM, as that host's vmnic says, with a shell. */
export async function boot(
  host: VmnicHost,
  vm: string,
  image: GuestImage,
): Promise<QemuGuest> {
  const hv = await host.cliOk<HvArgs>(["hv-args", vm, "--for", "qemu"]);
  const param = await host.cli(["guest-config", vm, "--format", "cmdline"], {
    json: false,
  });
  assert.equal(param.code, 0, param.stderr);
  return QemuGuest.start({
    image,
    hv,
    vcpus: 1,
    ipParam: param.stdout.trim(),
    accel,
    console: true,
  });
}

/**
 * Waits for a guest's READY (with `address`) and, unless `gatewayPing` is
 * false (no default gateway in its `ip=`), its ping of the gateway.
 */
export async function ready(
  qemu: QemuGuest,
  address: string,
  opts: { gatewayPing?: boolean } = {},
): Promise<void> {
  const m = await qemu.waitFor(/VMNIC-GUEST-READY (\S+)/, BOOT_TIMEOUT_MS);
  assert.equal(m[1], address, "the guest took the NIC's address");
  if (opts.gatewayPing === false) return;
  const gw = await qemu.waitFor(
    /VMNIC-GUEST-GW-PING (ok|fail)/,
    GW_PING_TIMEOUT_MS,
  );
  assert.equal(gw[1], "ok", `guest ${address} pinged its gateway`);
}

/** A guest pings `address`; true on a reply. */
export async function guestPings(
  qemu: QemuGuest,
  address: string,
): Promise<boolean> {
  return (await qemu.sh(`ping -c 3 -W 2 ${address} >/dev/null 2>&1`)).code ===
    0;
}

export { QemuGuest };
