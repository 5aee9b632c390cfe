/**
 * vmnic against the alternatives, side by side in one run, for the whole
 * life of a VM's network (add, then delete):
 * - the floor: a named netns made and removed (src/kernel/netns.ts) around
 *   the bare plugin chain (`bridge`, which execs `host-local`), ADD per NIC
 *   then DEL per NIC — what any provider pays;
 * - the library in process (`CniProvider.add` + `delete`);
 * - the CLI: one `deno run src/cli/main.ts` process for `add`, one for
 *   `delete`;
 * - the shell script an operator would write instead
 *   (bench/baseline_plumbing.sh: `ip netns add`, CNI ADD, iproute2 and tc
 *   for the same TAP wiring, CNI DEL, `ip netns del`).
 *
 * Groups: 1 and 4 NICs per VM, and 4 VMs (1 NIC each) added and deleted
 * concurrently (4 CLI processes, 4 scripts, 4 floors, 4 library calls in
 * one process; the figure is the batch's wall time), each at 0 and at 1000
 * existing VMs. The existing VMs are made once with real library `add`s
 * (records, netns, veth on the bridge, TAP, leases), outside the timed part.
 * `BENCH_EXISTING_VMS` overrides their number (default 1000), `BENCH_N`
 * the iterations per bench (default 15).
 *
 * Root only, inside a throwaway host netns; every netns (prefix unique to
 * the run), the temp dir (records, leases, conflist) go at the end, also on
 * SIGINT/SIGTERM:
 *
 * `unshare --net -- deno bench --allow-ffi --allow-read --allow-write
 * --allow-run --allow-env --allow-sys bench/alternatives_bench.ts`
 *
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createNetns, deleteNetns } from "../src/kernel/netns.ts";
import { CniProvider } from "../src/provider/provider.ts";
import type { ProviderConfig } from "../src/provider/types.ts";
import {
  BenchRun,
  CNI_BIN,
  execPlugin,
  inThrowawayNetns,
  removeNetnsWithPrefix,
  runChecked,
} from "./_support.ts";

const IS_ROOT = Deno.uid() === 0;
const EXISTING = Number(Deno.env.get("BENCH_EXISTING_VMS") ?? 1000);
/**
 * Measured iterations per bench: the whole file stays near 5 minutes
 * (`BENCH_N` overrides it, for a quick check).
 */
const N = Number(Deno.env.get("BENCH_N") ?? 15);
/**
 * Extra untimed rounds in each bench's first call; `deno bench`'s own warmup
 * calls (dropped from the medians) come on top.
 */
const WARMUP = 1;
/** VMs added and deleted at once in the parallel groups. */
const PARALLEL = 4;

const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));
const CLI_MAIN = join(REPO_ROOT, "src/cli/main.ts");
const SCRIPT = join(REPO_ROOT, "bench/baseline_plumbing.sh");
/** deno.json's `vmnic` task permissions. */
const CLI_PERMISSIONS = [
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-run",
  "--allow-env",
  "--allow-sys=hostname,uid",
];
const NETWORK = "altnet";
// Unique to the run, so a sweep by prefix touches nothing else.
const PREFIX = `vmnicb${Deno.pid.toString(36)}-`;
const BRIDGE = `vba${Deno.pid.toString(36)}`.slice(0, 15);
// A /16: room for the existing VMs and every benchmarked NIC.
const SUBNET = "10.241.0.0/16";

/** The run's dirs and settings, made once. */
interface Setup {
  dir: string;
  cliFlags: string[];
  /** The bridge plugin's config (name/cniVersion in), for floor and script. */
  bridgeConf: Record<string, unknown>;
  scriptEnv: Record<string, string>;
  provider: CniProvider;
}

let setup: Setup | undefined;

function makeSetup(): Omit<Setup, "provider"> & { config: ProviderConfig } {
  const dir = Deno.makeTempDirSync({ prefix: "vmnic-bench-" });
  const rootDir = join(dir, "root");
  const runDir = join(dir, "run");
  const cniConfDir = join(dir, "net.d");
  // Never created: no executable hooks.
  const hooksDir = join(dir, "hooks.d");
  const stateDir = join(dir, "script-state");
  Deno.mkdirSync(cniConfDir);
  Deno.mkdirSync(stateDir);
  const conflist = {
    cniVersion: "1.0.0",
    name: NETWORK,
    plugins: [{
      type: "bridge",
      bridge: BRIDGE,
      isGateway: true,
      ipMasq: false,
      ipam: {
        type: "host-local",
        ranges: [[{ subnet: SUBNET }]],
        routes: [{ dst: "0.0.0.0/0" }],
        dataDir: join(dir, "ipam"),
      },
    }],
  };
  Deno.writeTextFileSync(
    join(cniConfDir, `10-${NETWORK}.conflist`),
    JSON.stringify(conflist),
  );
  const bridgeConf = {
    ...conflist.plugins[0],
    name: conflist.name,
    cniVersion: conflist.cniVersion,
  };
  const confFile = join(dir, "bridge.json");
  Deno.writeTextFileSync(confFile, JSON.stringify(bridgeConf));
  return {
    dir,
    config: {
      rootDir,
      runDir,
      cniConfDir,
      cniBinDirs: [CNI_BIN],
      netnsPrefix: PREFIX,
      hooksDir,
      tsHooks: false,
    },
    cliFlags: [
      `--root-dir=${rootDir}`,
      `--run-dir=${runDir}`,
      `--cni-conf-dir=${cniConfDir}`,
      `--cni-bin-dir=${CNI_BIN}`,
      `--netns-prefix=${PREFIX}`,
      `--hooks-dir=${hooksDir}`,
    ],
    bridgeConf,
    scriptEnv: {
      BASELINE_CONF: confFile,
      BASELINE_STATE_DIR: stateDir,
      CNI_PATH: CNI_BIN,
    },
  };
}

/** Every netns of the run (its veths go with it), then the temp dir. */
function cleanup(): void {
  if (!setup) return;
  try {
    setup.provider?.close();
  } catch { /* best effort; the dir goes below */ }
  const removed = removeNetnsWithPrefix(PREFIX);
  Deno.removeSync(setup.dir, { recursive: true });
  console.error(`cleanup: ${removed} netns and ${setup.dir} removed`);
}

const run = new BenchRun(N, WARMUP, cleanup);

let populated: Promise<void> | undefined;

/** Makes the existing VMs once (real adds), reporting how long they took. */
function populate(): Promise<void> {
  populated ??= (async () => {
    const p = setup!.provider;
    const t0 = performance.now();
    for (let i = 0; i < EXISTING; i++) {
      const [nic] = await run.track(() => p.add(`existing-${i}`, {}, {}));
      if (!nic?.ips.length) throw new Error(`existing-${i}: no IP`);
    }
    const ms = performance.now() - t0;
    console.log(
      `populate: ${EXISTING} VMs added through the library in ${
        (ms / 1000).toFixed(1)
      } s (${(ms / EXISTING).toFixed(1)} ms per add)`,
    );
  })();
  return populated;
}

let seq = 0;

/** What any provider pays: netns, ADD per NIC, DEL per NIC, netns gone. */
async function floor(id: string, nics: number): Promise<void> {
  const name = PREFIX + id;
  const path = createNetns(name);
  try {
    const conf = setup!.bridgeConf;
    const results: string[] = [];
    for (let i = 0; i < nics; i++) {
      results.push(await execPlugin("bridge", "ADD", env(name, path, i), conf));
    }
    for (let i = nics - 1; i >= 0; i--) {
      // DEL gets the ADD result as prevResult, as libcni (and vmnic) give it.
      await execPlugin("bridge", "DEL", env(name, path, i), {
        ...conf,
        prevResult: JSON.parse(results[i]),
      });
    }
  } finally {
    deleteNetns(name);
  }
}

function env(name: string, path: string, i: number): Record<string, string> {
  return { CNI_CONTAINERID: name, CNI_NETNS: path, CNI_IFNAME: `eth${i}` };
}

async function library(vm: string, nics: number): Promise<void> {
  const p = setup!.provider;
  const specs = Array.from({ length: nics }, () => ({}));
  const added = await p.add(vm, {}, ...specs);
  const res = await p.delete([vm]);
  if (added.length !== nics || added.some((n) => !n.ips.length)) {
    throw new Error(`${vm}: add gave ${JSON.stringify(added)}`);
  }
  if (res.errors.length) throw new Error(JSON.stringify(res.errors));
}

/** One CLI process, as `deno task vmnic` runs it, without VMNIC_* settings. */
async function cli(vm: string, nics: number): Promise<void> {
  const env = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) =>
      !k.startsWith("VMNIC_")
    ),
  );
  const base = ["run", ...CLI_PERMISSIONS, CLI_MAIN];
  const flags = [...setup!.cliFlags, "--json"];
  const opts = { env, clearEnv: true, cwd: REPO_ROOT };
  await runChecked(
    Deno.execPath(),
    [...base, "add", vm, `--nics=${nics}`, ...flags],
    opts,
  );
  await runChecked(Deno.execPath(), [...base, "delete", vm, ...flags], opts);
}

async function script(id: string, nics: number): Promise<void> {
  const ns = PREFIX + id;
  const env = setup!.scriptEnv;
  await runChecked("bash", [SCRIPT, "add", ns, String(nics)], { env });
  await runChecked("bash", [SCRIPT, "del", ns, String(nics)], { env });
}

/** The four contenders, in table order; the floor is the baseline. */
const CONTENDERS = [
  { label: "floor", what: "netns + bridge/host-local ADD, DEL", fn: floor },
  { label: "library", what: "add + delete", fn: library },
  { label: "CLI", what: "vmnic add, vmnic delete", fn: cli },
  { label: "shell", what: "baseline_plumbing.sh add, del", fn: script },
] as const;

/**
 * One group: every contender, `nics` per VM, `parallel` VMs at once (their
 * batch timed as a whole). `before` runs untimed first.
 */
function register(
  group: string,
  nics: number,
  parallel: number,
  before: () => Promise<void>,
): void {
  for (const c of CONTENDERS) {
    run.bench(
      {
        name: `${c.label}: ${c.what} [${group}]`,
        label: c.label,
        group,
        baseline: c.label === "floor",
      },
      before,
      async () => {
        const ids = Array.from(
          { length: parallel },
          () => `${c.label.toLowerCase()}-${seq++}`,
        );
        await Promise.all(ids.map((id) => c.fn(id, nics)));
      },
    );
  }
}

/** Medians per group, with their ratio to the floor and to the script. */
function printMedians(): void {
  const lines = [
    "medians (ms; ratio to the floor and to the shell script, same group):",
  ];
  for (const group of run.samples.keys()) {
    const m = run.medians(group);
    const floorMs = m.get("floor")!.median;
    const shellMs = m.get("shell")!.median;
    lines.push(`  ${group}`);
    for (const [label, { median, n }] of m) {
      lines.push(
        `    ${label.padEnd(8)} ${median.toFixed(1).padStart(8)}  ` +
          `x${(median / floorMs).toFixed(2)} floor  ` +
          `x${(median / shellMs).toFixed(2)} shell  (n=${n})`,
      );
    }
  }
  console.error(lines.join("\n"));
}

if (!IS_ROOT) {
  console.error(
    "alternatives_bench: skipped, needs root (run it inside `unshare --net`)",
  );
} else if (!inThrowawayNetns()) {
  console.error(
    "alternatives_bench: skipped, run it inside a throwaway netns " +
      "(`unshare --net -- deno bench ...`): it makes a bridge and a subnet",
  );
} else {
  // The bridge takes 1024 ports; the benches add up to 4 more at once.
  if (!Number.isInteger(EXISTING) || EXISTING < 1 || EXISTING > 1000) {
    throw new Error(`BENCH_EXISTING_VMS=${EXISTING}: 1–1000 (bridge ports)`);
  }
  const s = makeSetup();
  setup = { ...s, provider: undefined! };
  setup.provider = await CniProvider.open(s.config);
  run.install(printMedians);
  const none = () => Promise.resolve();
  for (const [existing, before] of [[0, none], [EXISTING, populate]] as const) {
    register(`1 NIC, ${existing} VMs`, 1, 1, before);
    register(`4 NICs, ${existing} VMs`, 4, 1, before);
    register(
      `${PARALLEL} VMs at once, 1 NIC, ${existing} VMs`,
      1,
      PARALLEL,
      before,
    );
  }
}
