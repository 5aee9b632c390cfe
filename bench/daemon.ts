/**
 * `vmnic serve` and the warm pool, measured side by side with their
 * baselines in one run (issue 10's figures; the README quotes them):
 *
 * 1. Claim from a warm pool, one 1-NIC VM: the library in process, the
 *    daemon over its socket (an in-process HTTP/1.1 client), against the
 *    floor's add (a named netns + the `bridge` plugin's ADD).
 * 2. No pool: add and delete through the socket against the library in
 *    process (same root dir, alternating).
 * 3. Whole processes, warm pool: `curl --unix-socket` and `vmnic add`
 *    through the daemon, against the floor's add and an empty `deno run`.
 * 4. A burst of 50 concurrent requests: a warm pool of 50, then no pool,
 *    against 50 sequential library adds.
 * 5. The daemon's RSS at 0 and at `BENCH_DAEMON_VMS` VMs (default 1000),
 *    and its CPU while idle.
 *
 * Root only, inside a throwaway host netns (`deno task bench:daemon` runs
 * it under `unshare --net`); netns carry a prefix unique to the run and go
 * at the end with the temp dir and the prefix claim, also on SIGINT.
 * `BENCH_N` sets the samples per row (default 50).
 *
 * @module
 */
import { join } from "node:path";
import { callDaemon } from "../src/cli/daemon_client.ts";
import { createNetns, deleteNetns } from "../src/kernel/netns.ts";
import { CniProvider } from "../src/provider/provider.ts";
import { readProcFile } from "../src/sys/proc.ts";
import { CLI_MAIN, CLI_PERMISSIONS, REPO_ROOT } from "../tests/support/cli.ts";
import {
  benchIterations,
  cniEnv,
  execPlugin,
  inThrowawayNetns,
  makeProviderSetup,
  removeRun,
  RUN_PREFIX,
  runChecked,
  runCli,
} from "./_support.ts";

const N = benchIterations(50);
const BURST = 50;
const SEQUENTIAL = "library, 50 sequential adds";
const MANY = Number(Deno.env.get("BENCH_DAEMON_VMS") ?? 1000);
const IDLE_SECONDS = 10;
/** Rounds run untimed before each row's samples. */
const WARMUP = 3;

const NETWORK = {
  name: "benchnet",
  bridge: `vbd${Deno.pid.toString(36)}`.slice(0, 15),
  subnet: "10.241.0.0/16",
};

if (Deno.uid() !== 0 || !inThrowawayNetns()) {
  console.error(
    "bench/daemon.ts: needs root inside a throwaway netns: run `deno task bench:daemon`",
  );
  Deno.exit(2);
}

const setup = makeProviderSetup(NETWORK, RUN_PREFIX);
const socket = join(setup.dir, "vmnic.sock");
const emptyScript = join(setup.dir, "empty.ts");
Deno.writeTextFileSync(emptyScript, "");
let daemon: Deno.ChildProcess | undefined;
let library: CniProvider | undefined;
let vmCounter = 0;
const nextVm = () => `b${vmCounter++}`;

function cleanup(): void {
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

// ------------------------------------------------------------- helpers

interface Row {
  section: string;
  label: string;
  samples: number[];
  /** The row of the same section it is compared with (none: a baseline). */
  vs?: string;
}
const rows: Row[] = [];
const notes: string[] = [];

function pct(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

function record(
  section: string,
  label: string,
  samples: number[],
  vs?: string,
) {
  rows.push({ section, label, samples, vs });
  console.error(
    `${section} | ${label}: p50 ${pct(samples, 50).toFixed(2)} ms, p99 ${
      pct(samples, 99).toFixed(2)
    } ms`,
  );
}

type Round = (t: { start(): void; end(): void }) => Promise<void>;

/** Times `round` (its timed part between start and end) N times after warmup. */
async function sample(round: Round, n = N): Promise<number[]> {
  return (await interleaved([round], n))[0];
}

/**
 * Times each of `rounds` N times after warmup, taking turns (one of each
 * per iteration), so that a row and its baseline see the same moments of
 * the machine.
 */
async function interleaved(rounds: Round[], n = N): Promise<number[][]> {
  const out = rounds.map(() => [] as number[]);
  for (let i = 0; i < WARMUP + n; i++) {
    for (const [r, round] of rounds.entries()) {
      let t0 = 0;
      let t1 = 0;
      await round({
        start: () => t0 = performance.now(),
        end: () => t1 = performance.now(),
      });
      if (!t1) t1 = performance.now();
      if (i >= WARMUP) out[r].push(t1 - t0);
    }
  }
  return out;
}

async function api(method: string, path: string, body?: unknown) {
  const reply = await callDaemon(socket, method, path, {
    params: {},
    query: {},
    body,
  });
  if (reply.status !== 200) {
    throw new Error(
      `${method} ${path}: ${reply.status} ${JSON.stringify(reply.body)}`,
    );
  }
  return reply.body;
}

async function startDaemon(pool?: number): Promise<void> {
  daemon = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...CLI_PERMISSIONS,
      CLI_MAIN,
      "serve",
      ...setup.cliFlags,
      `--socket=${socket}`,
      ...(pool ? [`--pool=${NETWORK.name}=${pool}`] : []),
    ],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  for (let i = 0; i < 500; i++) {
    try {
      await api("GET", "/v1/health");
      if (pool) await poolFull("daemon");
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  throw new Error("vmnic serve did not answer");
}

async function stopDaemon(): Promise<void> {
  if (!daemon) return;
  daemon.kill("SIGTERM");
  await daemon.status;
  daemon = undefined;
}

interface PoolView {
  pools: { ready: number; target: number; filling: number }[];
}

/** Waits until every pool is full (so a claim never races a fill). */
async function poolFull(where: "daemon" | CniProvider): Promise<void> {
  for (;;) {
    const s = where === "daemon"
      ? await api("GET", "/v1/pool") as PoolView
      : await where.poolStatus() as PoolView;
    if (s.pools.every((p) => p.ready >= p.target && p.filling === 0)) return;
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** The floor's add: a named netns and the bridge plugin's ADD (timed), then undone. */
async function floorAdd(t: { start(): void; end(): void }): Promise<void> {
  const name = `${RUN_PREFIX}floor`;
  t.start();
  const path = createNetns(name);
  const env = cniEnv(name, path, "eth0");
  const result = await execPlugin("bridge", "ADD", env, setup.bridgeConf);
  t.end();
  await execPlugin("bridge", "DEL", env, {
    ...setup.bridgeConf,
    prevResult: JSON.parse(result),
  });
  deleteNetns(name);
}

async function runProcess(cmd: string, args: string[]): Promise<void> {
  await runChecked(cmd, args, { cwd: REPO_ROOT });
}

// /proc through libc: Deno's file APIs refuse it without --allow-all.
function procStatus(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+)`, "m").exec(
    readProcFile(`/proc/${pid}/status`),
  );
  return m ? Number(m[1]) : NaN;
}

function cpuTicks(pid: number): number {
  const stat = readProcFile(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]); // utime + stime
}

// ------------------------------------------------------------ the run

try {
  // 1. In-process claim from a warm pool, against the floor's add.
  library = await CniProvider.open(setup.config, {
    pool: [{ network: NETWORK.name, count: 4, queues: 1 }],
  });
  await poolFull(library);
  const floor = await sample(floorAdd);
  const FLOOR = "floor: netns + bridge ADD";
  record("1-NIC add, in process", FLOOR, floor);
  const lib = library;
  const claims = await sample(async (t) => {
    await poolFull(lib);
    const vm = nextVm();
    t.start();
    await lib.add(vm, {});
    t.end();
    await lib.delete([vm]);
  });
  record(
    "1-NIC add, in process",
    "library, claim from warm pool",
    claims,
    FLOOR,
  );
  await library.shutdown();
  library = undefined;

  // 2. No pool: the socket against the library, same root dir, alternating.
  await startDaemon();
  library = await CniProvider.open(setup.config);
  const libAdd: number[] = [];
  const libDel: number[] = [];
  const sockAdd: number[] = [];
  const sockDel: number[] = [];
  for (let i = 0; i < WARMUP + N; i++) {
    const keep = i >= WARMUP;
    let vm = nextVm();
    let t0 = performance.now();
    await library.add(vm, {});
    let t1 = performance.now();
    await library.delete([vm]);
    const t2 = performance.now();
    if (keep) libAdd.push(t1 - t0), libDel.push(t2 - t1);
    vm = nextVm();
    t0 = performance.now();
    await api("POST", `/v1/vms/${vm}/nics`, {});
    t1 = performance.now();
    await api("DELETE", `/v1/vms/${vm}`);
    const t3 = performance.now();
    if (keep) sockAdd.push(t1 - t0), sockDel.push(t3 - t1);
  }
  const LIB = "library in process";
  record("no pool: add", LIB, libAdd);
  record("no pool: add", "daemon over the socket", sockAdd, LIB);
  const lib2 = library;
  const cliAdd = await sample(async (t) => {
    const vm = nextVm();
    t.start();
    await runCli([
      "add",
      vm,
      ...setup.cliFlags,
      "--no-daemon",
    ]);
    t.end();
    await lib2.delete([vm]);
  });
  record("no pool: add", "`vmnic add --no-daemon` (a process)", cliAdd, LIB);
  notes.push(
    `\`vmnic add --no-daemon\` p50 ${
      pct(cliAdd, 50).toFixed(1)
    } ms = library add ` +
      `${pct(libAdd, 50).toFixed(1)} ms + ${
        (pct(cliAdd, 50) - pct(libAdd, 50)).toFixed(1)
      } ms (an empty deno run: see below)`,
  );
  record("no pool: delete", LIB, libDel);
  record("no pool: delete", "daemon over the socket", sockDel, LIB);
  await stopDaemon();

  // 3. Warm pool in the daemon: claims over the socket, and as processes.
  await startDaemon(4);
  const sockClaim = await sample(async (t) => {
    await poolFull("daemon");
    const vm = nextVm();
    t.start();
    await api("POST", `/v1/vms/${vm}/nics`, {});
    t.end();
    await api("DELETE", `/v1/vms/${vm}`);
  });
  record(
    "1-NIC add, in process",
    "daemon over the socket, warm pool",
    sockClaim,
    FLOOR,
  );
  // As processes, taking turns: the floor, curl, an empty deno run,
  // `vmnic version`, `vmnic add` through the daemon.
  const [floorProc, curl, empty, version, cli] = await interleaved([
    // After the last round's claim the pool refills: not during the floor.
    async (t) => {
      await poolFull("daemon");
      await floorAdd(t);
    },
    async (t) => {
      await poolFull("daemon");
      const vm = nextVm();
      t.start();
      await runProcess("curl", [
        "-sf",
        "--unix-socket",
        socket,
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-d",
        "{}",
        `http://vmnic/v1/vms/${vm}/nics`,
      ]);
      t.end();
      await api("DELETE", `/v1/vms/${vm}`);
    },
    async (t) => {
      t.start();
      await runProcess(Deno.execPath(), ["run", emptyScript]);
      t.end();
    },
    async (t) => {
      t.start();
      await runCli([
        "version",
      ]);
      t.end();
    },
    async (t) => {
      await poolFull("daemon");
      const vm = nextVm();
      t.start();
      await runCli([
        "add",
        vm,
        ...setup.cliFlags,
        `--socket=${socket}`,
      ]);
      t.end();
      await api("DELETE", `/v1/vms/${vm}`);
    },
  ]);
  record("1-NIC add as a process", FLOOR, floorProc);
  record(
    "1-NIC add as a process",
    "curl --unix-socket, warm pool",
    curl,
    FLOOR,
  );
  const EMPTY = "empty `deno run`";
  record("1-NIC add as a process", EMPTY, empty);
  record(
    "1-NIC add as a process",
    "`vmnic version` (start-up)",
    version,
    EMPTY,
  );
  record(
    "1-NIC add as a process",
    "`vmnic add` via the daemon, warm pool",
    cli,
    EMPTY,
  );
  await stopDaemon();

  // 4. Bursts of 50 concurrent requests, against 50 sequential library adds.
  const burst = async (label: string) => {
    const vms = Array.from({ length: BURST }, nextVm);
    const t0 = performance.now();
    const each = await Promise.all(vms.map(async (vm) => {
      const s = performance.now();
      await api("POST", `/v1/vms/${vm}/nics`, {});
      return performance.now() - s;
    }));
    const wall = performance.now() - t0;
    record("burst of 50", label, each, SEQUENTIAL);
    notes.push(`${label}: wall ${wall.toFixed(0)} ms for ${BURST} VMs`);
    await Promise.all(vms.map((vm) => api("DELETE", `/v1/vms/${vm}`)));
  };
  {
    const vms = Array.from({ length: BURST }, nextVm);
    const each: number[] = [];
    const t0 = performance.now();
    for (const vm of vms) {
      const s = performance.now();
      await library.add(vm, {});
      each.push(performance.now() - s);
    }
    const wall = performance.now() - t0;
    record("burst of 50", SEQUENTIAL, each);
    notes.push(
      `library, 50 sequential adds: wall ${
        wall.toFixed(0)
      } ms for ${BURST} VMs`,
    );
    await library.delete(vms);
  }
  await startDaemon(BURST);
  await burst("daemon, 50 concurrent, pool of 50 warm");
  await stopDaemon();
  await startDaemon();
  await burst("daemon, 50 concurrent, no pool");

  // 5. RSS and idle CPU of the daemon (no pool), at 0 and MANY VMs.
  const pid = daemon!.pid;
  const rss0 = procStatus(pid, "VmRSS");
  const ids = Array.from({ length: MANY }, nextVm);
  for (const vm of ids) await api("POST", `/v1/vms/${vm}/nics`, {});
  const rssMany = procStatus(pid, "VmRSS");
  const hz = 100; // USER_HZ on Linux
  const c0 = cpuTicks(pid);
  await new Promise((r) => setTimeout(r, IDLE_SECONDS * 1000));
  const idle = (cpuTicks(pid) - c0) / hz / IDLE_SECONDS * 100;
  notes.push(
    `daemon RSS: ${(rss0 / 1024).toFixed(1)} MiB at 0 VMs, ${
      (rssMany / 1024).toFixed(1)
    } MiB at ${MANY} VMs; idle CPU over ${IDLE_SECONDS} s at ${MANY} VMs: ${
      idle.toFixed(2)
    } %`,
  );
  for (let i = 0; i < ids.length; i += 50) {
    await api("DELETE", `/v1/vms/${ids[i]}`);
    await Promise.all(
      ids.slice(i + 1, i + 50).map((vm) => api("DELETE", `/v1/vms/${vm}`)),
    );
  }
  await stopDaemon();
  library.close();
  library = undefined;

  // The table.
  console.log(
    "| section | what | p50 ms | p99 ms | p50 against |\n|---|---|---:|---:|---|",
  );
  for (const r of rows) {
    const b = rows.find((x) => x.section === r.section && x.label === r.vs);
    const rel = b
      ? `${(pct(r.samples, 50) / pct(b.samples, 50)).toFixed(2)}× ${b.label}`
      : "(baseline)";
    console.log(
      `| ${r.section} | ${r.label} | ${pct(r.samples, 50).toFixed(2)} | ${
        pct(r.samples, 99).toFixed(2)
      } | ${rel} |`,
    );
  }
  console.log("");
  for (const n of notes) console.log(`- ${n}`);
  console.log(
    `\n(${N} samples per row after ${WARMUP} untimed; ${
      new Date().toISOString()
    })`,
  );
} finally {
  cleanup();
}
