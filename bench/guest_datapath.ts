/**
 * Guest data path: iperf3 TCP throughput host→guest and guest→host for a
 * QEMU guest (scripts/build_guest.ts `withIperf3`) on
 * - vmnic's wiring: `CniProvider.add` (bridge plugin veth + TAP joined by TC
 *   redirect in the VM's netns), QEMU on its TAP;
 * - a baseline: the same guest on a TAP joined to the veth by a Linux bridge
 *   inside a hand-made VM netns (`ip netns add`), the veth's host side on a
 *   host bridge that holds the gateway IP.
 *
 * The iperf3 client runs in this (host) netns: `iperf3 -c <guest> -t 5 -J`,
 * and `-R` for guest→host; the median of 3 runs each is printed with the
 * vmnic/bridge ratio. Under TCG both wirings are bound by the emulated CPU,
 * so the ratio says little about the wiring itself.
 *
 * Root only, inside a throwaway host netns; QEMU (killed by PID), the netns,
 * bridges, the temp dir and vmnic's prefix claim are removed at the end,
 * also on failure or SIGINT/SIGTERM:
 *
 * `unshare --net -- deno run --allow-ffi --allow-read --allow-write
 * --allow-run --allow-env --allow-sys bench/guest_datapath.ts`
 *
 * `BENCH_N` overrides the runs per direction (default 3), `BENCH_SECONDS`
 * the iperf3 duration (default 5).
 *
 * @module
 */
import { buildGuest, type GuestImage } from "../scripts/build_guest.ts";
import { CniProvider } from "../src/provider/provider.ts";
import type { NicConfig } from "../src/provider/types.ts";
import {
  chooseAccel,
  plainTapArgs,
  QemuGuest,
  qemuMissing,
} from "../tests/e2e/_qemu.ts";
import type { HvArgs } from "../src/provider/hv_args.ts";
import {
  benchIterations,
  makeProviderSetup,
  mayRun,
  median,
  removeClaim,
  removeNetnsWithPrefix,
  RUN_PREFIX,
  runChecked,
} from "./_support.ts";

/** Boot to the iperf3 marker; TCG on a busy 2-core host takes 10-40 s. */
const BOOT_TIMEOUT_MS = 150_000;
const RUNS = benchIterations(3);
const SECONDS = Number(Deno.env.get("BENCH_SECONDS") ?? 5);
const accel = chooseAccel();

const VMNIC_NET = {
  name: "gdpnet",
  bridge: `vgb${Deno.pid.toString(36)}`.slice(0, 15),
  subnet: "10.243.0.0/24",
};

/** The baseline's addresses: a /24 of its own, gateway on the host bridge. */
const BASE = {
  hostBridge: `vgh${Deno.pid.toString(36)}`.slice(0, 15),
  hostVeth: `vgv${Deno.pid.toString(36)}`.slice(0, 15),
  netns: `${RUN_PREFIX}bridge`,
  gateway: "10.244.0.1",
  guest: "10.244.0.2",
  prefix: 24,
  mac: "0a:58:0a:f4:00:02",
};

/** Results of one wiring: bits/s of each run, per direction. */
interface WiringResult {
  hostToGuest: number[];
  guestToHost: number[];
}

/** Things to undo at the end, last made first. */
const undo: (() => Promise<void> | void)[] = [];

async function cleanup(): Promise<void> {
  while (undo.length) {
    try {
      await undo.pop()!();
    } catch (e) {
      console.error(`cleanup: ${e}`);
    }
  }
  const removed = removeNetnsWithPrefix(RUN_PREFIX);
  if (removed) console.error(`cleanup: ${removed} leftover netns removed`);
}

/** `ip <args>` (iproute2: this script is a bench, not src/). */
function ip(...args: string[]): Promise<string> {
  return runChecked("ip", args);
}

/**
 * One iperf3 run against `address`; receiver-side bits/s. The server
 * re-opens its listener after each test, which the slow (emulated) guest
 * does late: a refused, busy or reset connection is retried for a while.
 */
async function iperf(address: string, reverse: boolean): Promise<number> {
  for (let attempt = 1;; attempt++) {
    try {
      return await iperfOnce(address, reverse);
    } catch (e) {
      const retry = /refused|busy|reset|closed/i.test((e as Error).message);
      if (!retry || attempt >= 20) throw e;
      console.error(`  retrying: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

async function iperfOnce(address: string, reverse: boolean): Promise<number> {
  const args = ["-c", address, "-t", String(SECONDS), "-J"];
  if (reverse) args.push("-R");
  const out = await new Deno.Command("iperf3", {
    args,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  let json: {
    error?: string;
    end?: { sum_received?: { bits_per_second: number } };
  };
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`iperf3 ${args.join(" ")}: ${text}`);
  }
  const bps = json.end?.sum_received?.bits_per_second;
  if (!out.success || json.error || typeof bps !== "number") {
    throw new Error(`iperf3 ${args.join(" ")}: ${json.error ?? text}`);
  }
  return bps;
}

/** Boots the guest on `tap` of `netnsPath`, measures both directions, kills it. */
async function measure(
  label: string,
  image: GuestImage,
  hv: Pick<HvArgs, "launch" | "args">,
  ipParam: string,
  address: string,
): Promise<WiringResult> {
  const qemu = QemuGuest.start({
    image,
    hv,
    vcpus: 1,
    // The marker flag rides on the `ip=` parameter QemuGuest appends.
    ipParam: `${ipParam} vmnic.iperf=1`,
    accel,
  });
  undo.push(() => qemu.kill());
  try {
    const m = await qemu.waitFor(
      /VMNIC-GUEST-IPERF3 (up|fail)/,
      BOOT_TIMEOUT_MS,
    );
    if (m[1] !== "up") throw new Error(`${label}: guest iperf3 did not start`);
    const bootS = ((performance.now() - qemu.startedAt) / 1000).toFixed(1);
    console.error(`${label}: guest ${address} up in ${bootS} s (${accel})`);
    // The guest pings its gateway after the marker: let that settle.
    await qemu.waitFor(/VMNIC-GUEST-GW-PING (ok|fail)/, 60_000);
    const result: WiringResult = { hostToGuest: [], guestToHost: [] };
    // One untimed short run: ARP, the first TCP slow start, guest page faults.
    await iperf(address, false).catch((e) =>
      console.error(`${label}: warm-up run failed: ${e.message}`)
    );
    for (let i = 0; i < RUNS; i++) {
      result.hostToGuest.push(await iperf(address, false));
      result.guestToHost.push(await iperf(address, true));
      console.error(
        `${label}: run ${i + 1}/${RUNS}: host→guest ${
          mbps(result.hostToGuest[i])
        }, guest→host ${mbps(result.guestToHost[i])}`,
      );
    }
    return result;
  } catch (e) {
    throw new Error(
      `${label}: ${(e as Error).message}\n--- serial ---\n${qemu.serial}`,
    );
  } finally {
    await qemu.kill();
  }
}

/** (a) vmnic: `add` one NIC through the library, the guest on its TAP. */
async function vmnicWiring(image: GuestImage): Promise<WiringResult> {
  const setup = makeProviderSetup(VMNIC_NET, RUN_PREFIX);
  undo.push(() => Deno.remove(setup.dir, { recursive: true }));
  // The first add claims the netns prefix: the claim goes after the VM.
  undo.push(() => removeClaim(setup.claim));
  const provider = await CniProvider.open(setup.config);
  undo.push(() => provider.close());
  const vm = "vm";
  const [nic]: NicConfig[] = await provider.add(vm, { cpu: 1 });
  undo.push(async () => {
    const r = await provider.delete([vm]);
    if (r.errors.length) console.error(`cleanup: delete ${vm}:`, r.errors);
  });
  // An added NIC is plumbed: its MAC is known.
  if (!nic.mac) throw new Error(`${vm}: add gave no MAC`);
  const [cmdline] = await provider.guestConfig(vm, "cmdline");
  return await measure(
    "vmnic",
    image,
    await provider.hvArgs(vm, "qemu"),
    cmdline.content.trim(),
    nic.ips[0].address,
  );
}

/** (b) baseline: veth + TAP joined by a Linux bridge inside the VM netns. */
async function bridgeWiring(image: GuestImage): Promise<WiringResult> {
  const { hostBridge, hostVeth, netns } = BASE;
  await ip("link", "add", hostBridge, "type", "bridge");
  undo.push(() => ip("link", "del", hostBridge).then(() => {}));
  await ip("addr", "add", `${BASE.gateway}/${BASE.prefix}`, "dev", hostBridge);
  await ip("link", "set", hostBridge, "up");
  await ip("netns", "add", netns);
  undo.push(() => ip("netns", "del", netns).then(() => {}));
  const inNs = (...args: string[]) => ip("-n", netns, ...args);
  await ip(
    "link",
    "add",
    hostVeth,
    "type",
    "veth",
    "peer",
    "name",
    "eth0",
    "netns",
    netns,
  );
  undo.push(() => ip("link", "del", hostVeth).catch(() => "").then(() => {}));
  await ip("link", "set", hostVeth, "master", hostBridge, "up");
  await inNs("link", "add", "br0", "type", "bridge");
  await inNs("tuntap", "add", "dev", "tap0", "mode", "tap", "vnet_hdr");
  for (const dev of ["eth0", "tap0"]) {
    await inNs("link", "set", dev, "master", "br0", "up");
  }
  await inNs("link", "set", "br0", "up");
  await inNs("link", "set", "lo", "up");
  const mask = "255.255.255.0";
  const ipParam = `ip=${BASE.guest}::${BASE.gateway}:${mask}:bridge:eth0:off`;
  return await measure(
    "bridge",
    image,
    plainTapArgs(`/var/run/netns/${netns}`, "tap0", BASE.mac),
    ipParam,
    BASE.guest,
  );
}

function mbps(bps: number): string {
  return `${(bps / 1e6).toFixed(1)} Mbit/s`;
}

async function main(): Promise<number> {
  if (!mayRun("bench/guest_datapath.ts")) return 2;
  const missing = await qemuMissing();
  if (missing) {
    console.error(`guest_datapath: ${missing} (deno task guest installs it)`);
    return 2;
  }
  let image: GuestImage;
  try {
    // No install: this netns has no route out (the build script installs).
    image = await buildGuest({ install: false, withIperf3: true });
  } catch (e) {
    console.error(
      `guest_datapath: ${(e as Error).message}\n` +
        "  build it first, outside the netns: deno task guest --with-iperf3",
    );
    return 2;
  }
  await ip("link", "set", "lo", "up");
  const vmnic = await vmnicWiring(image);
  const bridge = await bridgeWiring(image);
  const rows: [string, number[], number[]][] = [
    ["host→guest", vmnic.hostToGuest, bridge.hostToGuest],
    ["guest→host", vmnic.guestToHost, bridge.guestToHost],
  ];
  console.log(
    `guest data path, iperf3 TCP, median of ${RUNS} × ${SECONDS} s, ` +
      `QEMU ${accel.toUpperCase()}, 1 vCPU, virtio-net, vhost=off`,
  );
  for (const [dir, a, b] of rows) {
    const ma = median(a), mb = median(b);
    console.log(
      `  ${dir}: vmnic (TC redirect) ${mbps(ma)} (${ma.toFixed(0)} bit/s), ` +
        `bridge ${mbps(mb)} (${mb.toFixed(0)} bit/s), ` +
        `vmnic/bridge ${(ma / mb).toFixed(3)}`,
    );
  }
  if (accel === "tcg") {
    console.log(
      "  note: under TCG both wirings are bound by the emulated guest CPU " +
        "(and QEMU's userspace virtio-net), not by the host data path: " +
        "the ratio measures little about TC redirect vs bridge.",
    );
  }
  return 0;
}

let code = 1;
const onSignal = () => {
  void cleanup().finally(() => Deno.exit(130));
};
Deno.addSignalListener("SIGINT", onSignal);
Deno.addSignalListener("SIGTERM", onSignal);
try {
  code = await main();
} catch (e) {
  console.error(`guest_datapath: ${e instanceof Error ? e.message : e}`);
} finally {
  await cleanup();
  Deno.removeSignalListener("SIGINT", onSignal);
  Deno.removeSignalListener("SIGTERM", onSignal);
}
Deno.exit(code);
