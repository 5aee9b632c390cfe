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
 * the run), the temp dir (records, leases, conflist) and the prefix claim go
 * at the end, also on SIGINT/SIGTERM:
 *
 * `unshare --net -- deno bench --allow-ffi --allow-read --allow-write
 * --allow-run --allow-env --allow-sys bench/alternatives_bench.ts`
 *
 * @module
 */
import { join } from "node:path";
import { CniProvider } from "../src/provider/provider.ts";
import {
  addExistingVms,
  benchIterations,
  BenchRun,
  checkExistingVms,
  CNI_BIN,
  cniFloor,
  existingVms,
  makeProviderSetup,
  mayRun,
  once,
  type ProviderSetup,
  removeRun,
  REPO_ROOT,
  RUN_PREFIX,
  runChecked,
  runCli,
} from "./_support.ts";

const EXISTING = existingVms();
/**
 * Measured iterations per bench: the whole file stays near 5 minutes
 * (`BENCH_N` overrides it, for a quick check).
 */
const N = benchIterations(15);
/**
 * Extra untimed rounds in each bench's first call; `deno bench`'s own warmup
 * calls (dropped from the medians) come on top.
 */
const WARMUP = 1;
/** VMs added and deleted at once in the parallel groups. */
const PARALLEL = 4;

const SCRIPT = join(REPO_ROOT, "bench/baseline_plumbing.sh");
const NETWORK = {
  name: "altnet",
  bridge: `vba${Deno.pid.toString(36)}`.slice(0, 15),
  // A /16: room for the existing VMs and every benchmarked NIC.
  subnet: "10.241.0.0/16",
};

/** The run's dirs and settings, made once, and the provider on them. */
interface Setup extends ProviderSetup {
  /** What bench/baseline_plumbing.sh reads: the bridge conf, a state dir. */
  scriptEnv: Record<string, string>;
  provider: CniProvider;
}

let setup: Setup | undefined;

/** The provider's dirs and settings, and the shell script's beside them. */
function makeSetup(): Omit<Setup, "provider"> {
  const s = makeProviderSetup(NETWORK, RUN_PREFIX);
  const stateDir = join(s.dir, "script-state");
  Deno.mkdirSync(stateDir);
  const confFile = join(s.dir, "bridge.json");
  Deno.writeTextFileSync(confFile, JSON.stringify(s.bridgeConf));
  return {
    ...s,
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
  const { dir, provider, claim } = setup;
  removeRun(RUN_PREFIX, dir, () => provider.close(), claim);
}

const run = new BenchRun(N, WARMUP, cleanup);

/** Makes the existing VMs once (real adds), reporting how long they took. */
const populate = once(async () => {
  const ended = await addExistingVms(run, setup!.provider, EXISTING);
  const ms = ended[EXISTING - 1];
  console.log(
    `populate: ${EXISTING} VMs added through the library in ${
      (ms / 1000).toFixed(1)
    } s (${(ms / EXISTING).toFixed(1)} ms per add)`,
  );
});

let seq = 0;

/** What any provider pays: netns, ADD per NIC, DEL per NIC, netns gone. */
function floor(id: string, nics: number): Promise<void> {
  return cniFloor(RUN_PREFIX + id, setup!.bridgeConf, nics);
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

/** One CLI process for `add`, one for `delete`. */
async function cli(vm: string, nics: number): Promise<void> {
  const flags = [...setup!.cliFlags, "--json"];
  await runCli(["add", vm, `--nics=${nics}`, ...flags]);
  await runCli(["delete", vm, ...flags]);
}

async function script(id: string, nics: number): Promise<void> {
  const ns = RUN_PREFIX + id;
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

if (mayRun("alternatives_bench")) {
  // The bridge takes 1024 ports; the benches add up to 4 more at once.
  checkExistingVms(EXISTING, 1000);
  const s = makeSetup();
  setup = { ...s, provider: await CniProvider.open(s.config) };
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
