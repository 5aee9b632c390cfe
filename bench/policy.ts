/**
 * What the policy costs (issue 11 §4), in one run:
 *
 * 1. `add` + `delete` of a 1-NIC VM through the library, alternating pair
 *    by pair on one root dir: with no filtering (anti-spoofing off, the
 *    metadata address allowed: 3 filters on the TAP), with the default
 *    policy (anti-spoofing, 169.254.169.254 denied: ~20 filters), and with
 *    a full one (rates both ways, isolation, 4 egress rules). Medians, p90.
 * 2. A QEMU guest's iperf3 TCP throughput (host→guest, guest→host) with
 *    anti-spoofing on against off, switched live on the same NIC between
 *    runs (`provider.policy`), alternating. Medians and the ratio (the goal
 *    is at least 0.95).
 *
 * Root only, inside a throwaway host netns: `deno task bench:policy`.
 * `BENCH_N` sets the add pairs (default 60), `BENCH_RUNS` the iperf3 runs
 * per setting and direction (default 3), `BENCH_SECONDS` their length
 * (default 5). The guest needs `deno task guest --with-iperf3` first.
 *
 * @module
 */
import { buildGuest, type GuestImage } from "../scripts/build_guest.ts";
import { CniProvider } from "../src/provider/provider.ts";
import type { PolicySpec } from "../src/provider/policy.ts";
import { chooseAccel, QemuGuest, qemuMissing } from "../tests/e2e/_qemu.ts";
import {
  benchIterations,
  inThrowawayNetns,
  makeProviderSetup,
  median,
  removeRun,
  RUN_PREFIX,
} from "./_support.ts";

const N = benchIterations(60);
const WARMUP = 5;
const RUNS = Number(Deno.env.get("BENCH_RUNS") ?? 3);
const SECONDS = Number(Deno.env.get("BENCH_SECONDS") ?? 5);
const BOOT_TIMEOUT_MS = 150_000;

if (Deno.uid() !== 0 || !inThrowawayNetns()) {
  console.error(
    "bench/policy.ts: needs root inside a throwaway netns: run `deno task bench:policy`",
  );
  Deno.exit(2);
}

/** The policies an add is timed with. */
const POLICIES: [string, PolicySpec][] = [
  ["no filtering (anti-spoofing off, metadata allowed)", {
    antiSpoofing: false,
    egress: [{ action: "allow", cidr: "169.254.169.254/32" }],
  }],
  ["default policy (anti-spoofing on, metadata denied)", {}],
  ["full policy (rates both ways, isolate, 4 egress rules)", {
    rate: "100mbit",
    isolate: true,
    egress: [
      { action: "deny", cidr: "10.200.0.0/16", protocol: "tcp", port: 22 },
      { action: "allow", cidr: "10.200.1.0/24" },
      { action: "deny", cidr: "192.0.2.0/24" },
      { action: "deny", cidr: "fd00::/8", protocol: "udp" },
    ],
  }],
];

const setup = makeProviderSetup({
  name: "benchpol",
  bridge: `vbp${Deno.pid.toString(36)}`.slice(0, 15),
  subnet: "10.241.0.0/16",
}, RUN_PREFIX);
// One provider; the event log off, so only the policy differs.
const provider = await CniProvider.open({
  ...setup.config,
  eventRetention: null,
});
let qemu: QemuGuest | undefined;
const cleanup = async () => {
  await qemu?.kill();
  await provider.delete(["guest"]).catch(() => {});
  removeRun(RUN_PREFIX, setup.dir, () => provider.close(), setup.claim);
};
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(sig, () => {
    void cleanup().finally(() => Deno.exit(130));
  });
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

async function addTimes(): Promise<void> {
  const times = POLICIES.map(() => [] as number[]);
  let vm = 0;
  for (let i = 0; i < WARMUP + N; i++) {
    // Rotate which goes first: none always runs on a warmer cache.
    for (let k = 0; k < POLICIES.length; k++) {
      const j = (i + k) % POLICIES.length;
      const id = `p${vm++}`;
      const t0 = performance.now();
      await provider.add(id, {}, { policy: POLICIES[j][1] });
      await provider.delete([id]);
      if (i >= WARMUP) times[j].push(performance.now() - t0);
    }
  }
  console.log("| add + delete, 1 NIC, library | median ms | p90 ms |");
  console.log("|---|---:|---:|");
  for (const [j, [label]] of POLICIES.entries()) {
    console.log(
      `| ${label} | ${pct(times[j], 50).toFixed(2)} | ${
        pct(times[j], 90).toFixed(2)
      } |`,
    );
  }
  const base = pct(times[0], 50);
  const signed = (x: number) => `${x >= 0 ? "+" : ""}${x.toFixed(2)}`;
  console.log(
    `\n${N} triples after ${WARMUP} untimed; default policy vs none: ${
      signed(pct(times[1], 50) - base)
    } ms, full vs none: ${signed(pct(times[2], 50) - base)} ms`,
  );
}

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
    try {
      const bps = JSON.parse(text).end?.sum_received?.bits_per_second;
      if (out.success && typeof bps === "number") return bps;
    } catch { /* retried below */ }
    if (attempt >= 10) throw new Error(`iperf3 ${args.join(" ")}: ${text}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function throughput(): Promise<void> {
  const missing = await qemuMissing();
  if (missing) {
    console.log(`\nguest throughput: skipped (${missing})`);
    return;
  }
  let image: GuestImage;
  try {
    image = await buildGuest({ install: false, withIperf3: true });
  } catch (e) {
    console.log(
      `\nguest throughput: skipped (${
        (e as Error).message
      }; deno task guest --with-iperf3)`,
    );
    return;
  }
  const accel = chooseAccel();
  const [nic] = await provider.add("guest", { cpu: 1 });
  const [cmdline] = await provider.guestConfig("guest", "cmdline");
  qemu = QemuGuest.start({
    image,
    hv: await provider.hvArgs("guest", "qemu"),
    vcpus: 1,
    ipParam: `${cmdline.content.trim()} vmnic.iperf=1`,
    accel,
  });
  await qemu.waitFor(/VMNIC-GUEST-IPERF3 (up|fail)/, BOOT_TIMEOUT_MS);
  const address = nic.ips[0].address;
  await iperf(address, false); // warm up
  const r = {
    on: { to: [] as number[], from: [] as number[] },
    off: { to: [] as number[], from: [] as number[] },
  };
  for (let i = 0; i < RUNS; i++) {
    for (
      const which of i % 2 ? ["off", "on"] as const : ["on", "off"] as const
    ) {
      await provider.policy("guest", 0, {
        set: { antiSpoofing: which === "on" },
      });
      r[which].to.push(await iperf(address, false));
      r[which].from.push(await iperf(address, true));
    }
  }
  const mb = (x: number) => (x / 1e6).toFixed(1);
  console.log(
    `\n| guest iperf3 TCP, median of ${RUNS} × ${SECONDS} s, QEMU ${accel.toUpperCase()} | anti-spoofing off Mbit/s | on Mbit/s | on/off |`,
  );
  console.log("|---|---:|---:|---:|");
  for (
    const [label, on, off] of [
      ["host→guest", r.on.to, r.off.to],
      ["guest→host", r.on.from, r.off.from],
    ] as const
  ) {
    console.log(
      `| ${label} | ${mb(median(off))} | ${mb(median(on))} | ${
        (median(on) / median(off)).toFixed(3)
      } |`,
    );
  }
}

try {
  await addTimes();
  await throughput();
} finally {
  await cleanup();
}
