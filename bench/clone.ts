/**
 * Clone NICs against normal NICs, in one run (issue 12 §3; docs/clones.md
 * quotes the figures):
 *
 * 1. iperf3 TCP throughput host→guest and guest→host through a normal NIC
 *    (TC redirect veth↔TAP) and through a clone NIC (the netns's stack:
 *    proxy ARP, routing, nftables DNAT/SNAT and conntrack), the same QEMU
 *    guest (scripts/build_guest.ts `withIperf3`) booted on each, side by
 *    side, with the same identity (the clone's guest has the source's).
 *    The iperf3 client runs in this (host) netns against each NIC's CNI
 *    address, the two NICs' runs interleaved: `iperf3 -c <addr> -t 5 -J`
 *    and `-R`.
 * 2. `add` time through the library: a one-NIC VM, and a clone of one
 *    (`cloneOf`), alternating, each deleted after its sample.
 *
 * Root only, inside a throwaway host netns (`deno task bench:clone` runs
 * it under `unshare --net`); QEMU is killed by its PID; the netns, the
 * bridge, the temp dir and the prefix claim go at the end, also on
 * failure or SIGINT/SIGTERM. `BENCH_N` sets the add samples per kind
 * (default 30), `BENCH_RUNS` the iperf3 runs per direction (default 5),
 * `BENCH_SECONDS` their length (default 5).
 *
 * @module
 */
import { buildGuest, type GuestImage } from "../scripts/build_guest.ts";
import { CniProvider } from "../src/provider/provider.ts";
import type { HvArgs } from "../src/provider/hv_args.ts";
import { chooseAccel, QemuGuest, qemuMissing } from "../tests/e2e/_qemu.ts";
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

/** Boot to the iperf3 marker; TCG on a busy 2-core host takes 10-60 s. */
const BOOT_TIMEOUT_MS = 240_000;
/** The guest's pings of its gateway after the marker. */
const GW_PING_TIMEOUT_MS = 90_000;
/** Add samples per kind. */
const N = benchIterations(30);
/** iperf3 runs per direction. */
const RUNS = Number(Deno.env.get("BENCH_RUNS") ?? 5);
/** Seconds per iperf3 run. */
const SECONDS = Number(Deno.env.get("BENCH_SECONDS") ?? 5);
/** Untimed adds of each kind before the samples. */
const WARMUP = 3;
/** Attempts of an iperf3 run the slow guest's server refuses at first. */
const IPERF_ATTEMPTS = 20;
/** Wait between those attempts. */
const IPERF_RETRY_MS = 500;
/** Percentile reported beside the median. */
const P90 = 0.9;
const accel = chooseAccel();

const NET = {
  name: "clonenet",
  bridge: `vbk${Deno.pid.toString(36)}`.slice(0, 15),
  subnet: "10.245.0.0/24",
};

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

/** bits/s of one iperf3 run against `address` (retried while refused). */
async function iperf(address: string, reverse: boolean): Promise<number> {
  const args = ["-c", address, "-t", String(SECONDS), "-J"];
  if (reverse) args.push("-R");
  for (let attempt = 1;; attempt++) {
    const out = await new Deno.Command("iperf3", {
      args,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    let json: {
      error?: string;
      end?: { sum_received?: { bits_per_second: number } };
    } = {};
    try {
      json = JSON.parse(text);
    } catch { /* reported below */ }
    const bps = json.end?.sum_received?.bits_per_second;
    if (out.success && !json.error && typeof bps === "number") return bps;
    const why = json.error ?? (text || new TextDecoder().decode(out.stderr));
    if (!/refused|busy|reset|closed/i.test(why) || attempt >= IPERF_ATTEMPTS) {
      throw new Error(`iperf3 ${args.join(" ")}: ${why}`);
    }
    await new Promise((r) => setTimeout(r, IPERF_RETRY_MS));
  }
}

/** A guest booted on one NIC with an iperf3 server, ready for the client. */
async function bootGuest(
  label: string,
  image: GuestImage,
  hv: HvArgs,
  ipParam: string,
): Promise<QemuGuest> {
  const qemu = QemuGuest.start({
    image,
    hv,
    vcpus: 1,
    ipParam: `${ipParam} vmnic.iperf=1`,
    accel,
  });
  undo.push(() => qemu.kill());
  try {
    const m = await qemu.waitFor(
      /VMNIC-GUEST-IPERF3 (up|fail)/,
      BOOT_TIMEOUT_MS,
    );
    if (m[1] !== "up") throw new Error("guest iperf3 did not start");
    const ping = await qemu.waitFor(
      /VMNIC-GUEST-GW-PING (ok|fail)/,
      GW_PING_TIMEOUT_MS,
    );
    if (ping[1] !== "ok") throw new Error("the guest cannot reach its gateway");
    return qemu;
  } catch (e) {
    throw new Error(
      `${label}: ${(e as Error).message}\n--- serial ---\n${qemu.serial}`,
    );
  }
}

/**
 * Both NICs' throughput, their runs interleaved (normal, clone, normal, …)
 * so load from elsewhere weighs on both alike.
 */
async function throughput(
  targets: { label: string; address: string }[],
): Promise<{ in: number[]; out: number[] }[]> {
  // One short untimed run each: ARP, conntrack, slow start, page faults.
  for (const t of targets) {
    await iperf(t.address, false).catch((e) =>
      console.error(`${t.label}: warm-up: ${e.message}`)
    );
  }
  const results = targets.map(() => ({
    in: [] as number[],
    out: [] as number[],
  }));
  for (let i = 0; i < RUNS; i++) {
    for (const [k, t] of targets.entries()) {
      const r = results[k];
      r.in.push(await iperf(t.address, false));
      r.out.push(await iperf(t.address, true));
      console.error(
        `${t.label}: run ${i + 1}/${RUNS}: host→guest ${mbps(r.in[i])}, ` +
          `guest→host ${mbps(r.out[i])}`,
      );
    }
  }
  return results;
}

function mbps(bps: number): string {
  return `${(bps / 1e6).toFixed(1)} Mbit/s`;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)];
}

async function main(): Promise<number> {
  if (!mayRun("bench/clone.ts")) return 2;
  const missing = await qemuMissing();
  if (missing) {
    console.error(`bench/clone.ts: ${missing} (deno task guest installs it)`);
    return 2;
  }
  let image: GuestImage;
  try {
    image = await buildGuest({ install: false, withIperf3: true });
  } catch (e) {
    console.error(
      `bench/clone.ts: ${(e as Error).message}\n` +
        "  build it first, outside the netns: deno task guest --with-iperf3",
    );
    return 2;
  }
  await runChecked("ip", ["link", "set", "lo", "up"]);
  const setup = makeProviderSetup(NET, RUN_PREFIX);
  undo.push(() => Deno.remove(setup.dir, { recursive: true }));
  undo.push(() => removeClaim(setup.claim));
  undo.push(() =>
    runChecked("ip", ["link", "del", NET.bridge]).then(() => {}, () => {})
  );
  const provider = await CniProvider.open(setup.config);
  undo.push(() => provider.close());
  const made = new Set<string>();
  undo.push(async () => {
    if (made.size) await provider.delete([...made], { force: true });
  });

  // 1. Throughput: the source VM's NIC (normal), then its clone's.
  const [src] = await provider.add("src", { cpu: 1 });
  made.add("src");
  const [clone] = await provider.add("clone", { cloneOf: "src" });
  made.add("clone");
  const param = async (vm: string) =>
    (await provider.guestConfig(vm, "cmdline"))[0].content.trim();
  // Both guests at once: the same identity, each in its own netns.
  const guests = await Promise.all([
    bootGuest(
      "normal NIC",
      image,
      await provider.hvArgs("src", "qemu"),
      await param("src"),
    ),
    bootGuest(
      "clone NIC",
      image,
      await provider.hvArgs("clone", "qemu"),
      await param("clone"),
    ),
  ]);
  const [normal, cloned] = await throughput([
    { label: "normal NIC", address: src.ips[0].address },
    { label: "clone NIC", address: clone.ips[0].address },
  ]);
  for (const g of guests) await g.kill();

  // 2. Add time: alternating, each VM deleted after its sample.
  const times = { normal: [] as number[], clone: [] as number[] };
  for (let i = 0; i < WARMUP + N; i++) {
    for (const kind of ["normal", "clone"] as const) {
      const vm = `${kind[0]}${i}`;
      const t0 = performance.now();
      await provider.add(vm, kind === "clone" ? { cloneOf: "src" } : {});
      const ms = performance.now() - t0;
      made.add(vm);
      if (i >= WARMUP) times[kind].push(ms);
      const r = await provider.delete([vm]);
      if (r.errors.length) {
        throw new Error(`delete ${vm}: ${r.errors[0].error}`);
      }
      made.delete(vm);
    }
  }

  console.log(
    `clone NICs vs normal NICs (${accel.toUpperCase()} guest, 1 vCPU, ` +
      `virtio-net, vhost off; bridge plugin + host-local)`,
  );
  console.log(
    `  iperf3 TCP, median of ${RUNS} × ${SECONDS} s, client in the host netns:`,
  );
  for (
    const [dir, a, b] of [
      ["host→guest", normal.in, cloned.in],
      ["guest→host", normal.out, cloned.out],
    ] as const
  ) {
    const ma = median(a), mb = median(b);
    console.log(
      `    ${dir}: normal (TC redirect) ${mbps(ma)}, clone (stack + NAT) ` +
        `${mbps(mb)}, clone/normal ${(mb / ma).toFixed(3)}`,
    );
  }
  console.log(`  library add, one NIC, ${N} samples each (after ${WARMUP}):`);
  for (const kind of ["normal", "clone"] as const) {
    const xs = times[kind];
    console.log(
      `    ${kind}: median ${median(xs).toFixed(1)} ms, p90 ${
        percentile(xs, P90).toFixed(1)
      } ms`,
    );
  }
  console.log(
    `    clone/normal (medians) ${
      (median(times.clone) / median(times.normal)).toFixed(2)
    }`,
  );
  if (accel === "tcg") {
    console.log(
      "  note: under TCG the emulated guest CPU bounds both NICs' " +
        "throughput; the ratio says little about the host data path.",
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
  console.error(`bench/clone.ts: ${e instanceof Error ? e.message : e}`);
} finally {
  await cleanup();
  Deno.removeSignalListener("SIGINT", onSignal);
  Deno.removeSignalListener("SIGTERM", onSignal);
}
Deno.exit(code);
