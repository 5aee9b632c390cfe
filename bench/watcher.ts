/**
 * The watcher inside `vmnic serve` (docs/watcher.md), measured:
 *
 * 1. Its first look: from `vmnic serve` starting to its watcher watching
 *    every VM (`GET /v1/health`), at `BENCH_WATCHER_VMS` VMs (default 100).
 * 2. The daemon's CPU while idle, in six windows of 10 s (they hold two
 *    sweeps of the records, every 30 s), with those VMs watched, against the
 *    same daemon with every reaction off (utime + stime of /proc/PID/stat).
 * 3. Reaction latency: a TAP's descriptor closed (its hypervisor stopping)
 *    → the VM quiesced, and opened again → unquiesced, each measured to the
 *    end of the watcher's event (`watch:carrier-lost`, `watch:carrier-back`:
 *    its start time plus its duration), with the default settle time
 *    (500 ms) and with `--watch-settle 0` (hearing and acting alone).
 *    `BENCH_N` samples each (default 20), one VM each.
 *
 * Root only, inside a throwaway host netns (`deno task bench:watcher` runs
 * it under `unshare --net`); netns carry a prefix unique to the run and go
 * at the end with the temp dir and the prefix claim, also on SIGINT.
 *
 * @module
 */
import { join } from "node:path";
import { callDaemon } from "../src/cli/daemon_client.ts";
import { CniProvider } from "../src/provider/provider.ts";
import { readProcFile } from "../src/sys/proc.ts";
import { libc } from "../src/sys/libc.ts";
import type { WatcherStatus } from "../src/watcher/watcher.ts";
import { CLI_MAIN, CLI_PERMISSIONS, REPO_ROOT } from "../tests/support/cli.ts";
import { attachTap } from "../tests/watcher/_support.ts";
import {
  benchIterations,
  inThrowawayNetns,
  makeProviderSetup,
  removeRun,
  RUN_PREFIX,
} from "./_support.ts";

const N = benchIterations(20);
const VMS = Number(Deno.env.get("BENCH_WATCHER_VMS") ?? 100);
const IDLE_SECONDS = 10;
const IDLE_WINDOWS = 6;
/** USER_HZ on Linux: /proc/PID/stat counts CPU time in 1/100 s. */
const USER_HZ = 100;
/** How long a TAP stays open before it is closed (past any settle time). */
const HOLD_MS = 800;

const NETWORK = {
  name: "benchnet",
  bridge: `vbw${Deno.pid.toString(36)}`.slice(0, 15),
  subnet: "10.242.0.0/16",
};

if (Deno.uid() !== 0 || !inThrowawayNetns()) {
  console.error(
    "bench/watcher.ts: needs root inside a throwaway netns: run `deno task bench:watcher`",
  );
  Deno.exit(2);
}
if (!Number.isInteger(VMS) || VMS < N || VMS > 1000) {
  console.error(`BENCH_WATCHER_VMS=${VMS}: ${N}–1000 (BENCH_N VMs at least)`);
  Deno.exit(2);
}

const setup = makeProviderSetup(NETWORK, RUN_PREFIX);
const socket = join(setup.dir, "vmnic.sock");
let daemon: Deno.ChildProcess | undefined;
let library: CniProvider | undefined;
const fds = new Set<number>();

function cleanup(): void {
  for (const fd of fds) libc().close(fd);
  fds.clear();
  if (daemon) {
    try {
      daemon.kill("SIGKILL");
    } catch { /* gone */ }
  }
  removeRun(RUN_PREFIX, setup.dir, () => library?.close(), setup.claim);
}
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(sig, () => {
    cleanup();
    Deno.exit(130);
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function pct(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

function cpuTicks(pid: number): number {
  const stat = readProcFile(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]); // utime + stime
}

async function health(): Promise<{ watcher: WatcherStatus }> {
  const reply = await callDaemon(socket, "GET", "/v1/health", {
    params: {},
    query: {},
  });
  if (reply.status !== 200) throw new Error(`health: ${reply.status}`);
  return reply.body as { watcher: WatcherStatus };
}

/** Starts the daemon; resolves once its watcher watches every VM (ms). */
async function startDaemon(args: string[]): Promise<number> {
  const t0 = performance.now();
  daemon = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...CLI_PERMISSIONS,
      CLI_MAIN,
      "serve",
      ...setup.cliFlags,
      `--socket=${socket}`,
      ...args,
    ],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const off = args.includes("--watch-carrier=off");
  for (let i = 0; i < 6000; i++) {
    try {
      const h = await health();
      if (off || (h.watcher.running && h.watcher.vms === VMS)) {
        return performance.now() - t0;
      }
    } catch { /* not yet */ }
    await sleep(10);
  }
  throw new Error("vmnic serve's watcher did not come up");
}

async function stopDaemon(): Promise<void> {
  if (!daemon) return;
  daemon.kill("SIGTERM");
  await daemon.status;
  daemon = undefined;
}

/**
 * The daemon's CPU in IDLE_WINDOWS windows of IDLE_SECONDS of idling, in
 * % of one core (six windows of 10 s hold two sweeps of the records).
 */
async function idleCpu(): Promise<number[]> {
  const pid = daemon!.pid;
  await sleep(2_000); // past the first look's tail
  const out: number[] = [];
  for (let i = 0; i < IDLE_WINDOWS; i++) {
    const c0 = cpuTicks(pid);
    await sleep(IDLE_SECONDS * 1000);
    out.push((cpuTicks(pid) - c0) / USER_HZ / IDLE_SECONDS * 100);
  }
  return out;
}

/** Waits for the watcher's event `op` on `vmId` after `afterId`; its end (epoch ms). */
async function eventEnd(
  op: string,
  vmId: string,
  afterId: number,
): Promise<number> {
  for (let i = 0; i < 3000; i++) {
    const [e] = await library!.events({ op, vmId, afterId, limit: 1 });
    if (e) {
      if (e.outcome !== "ok") throw new Error(`${op} ${vmId}: ${e.error}`);
      return Date.parse(e.time) + e.durationMs;
    }
    await sleep(5);
  }
  throw new Error(`no ${op} for ${vmId}`);
}

/** N rounds, one VM each: close its TAP, reopen it; the two latencies. */
async function latencies(): Promise<{ lost: number[]; back: number[] }> {
  const lost: number[] = [];
  const back: number[] = [];
  for (let i = 0; i < N; i++) {
    const vm = `w${i}`;
    const path = `/var/run/netns/${RUN_PREFIX}${vm}`;
    let fd = attachTap(path, "tap0");
    fds.add(fd);
    await sleep(HOLD_MS);
    let last = library!.lastEventId();
    libc().close(fd);
    fds.delete(fd);
    const closedAt = Date.now();
    lost.push(await eventEnd("watch:carrier-lost", vm, last) - closedAt);
    last = library!.lastEventId();
    fd = attachTap(path, "tap0");
    const openedAt = Date.now();
    fds.add(fd);
    back.push(await eventEnd("watch:carrier-back", vm, last) - openedAt);
  }
  // Closed together: their reactions come after the measurements.
  for (const fd of fds) libc().close(fd);
  fds.clear();
  await sleep(2_000);
  return { lost, back };
}

function row(label: string, xs: number[]): string {
  return `${label}: p50 ${pct(xs, 50).toFixed(0)} ms, p95 ${
    pct(xs, 95).toFixed(0)
  } ms, max ${Math.max(...xs).toFixed(0)} ms (n=${xs.length})`;
}

try {
  library = await CniProvider.open(setup.config);
  const t0 = performance.now();
  for (let i = 0; i < VMS; i++) await library.add(`w${i}`);
  console.error(
    `setup: ${VMS} VMs added in ${
      ((performance.now() - t0) / 1000).toFixed(1)
    } s`,
  );

  // Baseline: the daemon with every reaction off (the watcher not running).
  const upOff = await startDaemon([
    "--watch-carrier=off",
    "--watch-netns=off",
    "--watch-host=off",
  ]);
  const cpuOff = await idleCpu();
  await stopDaemon();

  // Defaults: carrier repair, netns report, host report, settle 500 ms.
  const firstLook = await startDaemon([]);
  const cpuOn = await idleCpu();
  const settle500 = await latencies();
  await stopDaemon();

  const firstLook0 = await startDaemon(["--watch-settle=0"]);
  const settle0 = await latencies();
  await stopDaemon();

  const lines = [
    `vmnic watcher bench: ${VMS} VMs (one NIC each), ${Deno.build.arch}, ${navigator.hardwareConcurrency} CPUs`,
    `serve start -> watcher watching ${VMS} VMs: ${firstLook.toFixed(0)} ms ` +
    `(again: ${firstLook0.toFixed(0)} ms); serve start -> answering with ` +
    `every reaction off: ${upOff.toFixed(0)} ms`,
    `idle CPU, ${VMS} VMs, ${IDLE_WINDOWS} windows of ${IDLE_SECONDS} s ` +
    `(% of one core; 1 tick = ${
      (100 / USER_HZ / IDLE_SECONDS).toFixed(2)
    } %): ` +
    `watcher on ${cpuOn.map((c) => c.toFixed(2)).join(" / ")}; ` +
    `every reaction off ${cpuOff.map((c) => c.toFixed(2)).join(" / ")}`,
    row("TAP closed -> VM quiesced, settle 500 ms", settle500.lost),
    row("TAP opened -> VM unquiesced, settle 500 ms", settle500.back),
    row("TAP closed -> VM quiesced, settle 0", settle0.lost),
    row("TAP opened -> VM unquiesced, settle 0", settle0.back),
  ];
  console.log(lines.join("\n"));
} finally {
  await stopDaemon().catch(() => {});
  cleanup();
}
