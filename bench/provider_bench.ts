/**
 * `add` + `delete` of one VM with one NIC, end to end, at 0 and at 1000
 * existing VMs:
 * - the floor (baseline): what any provider must pay — a named netns made
 *   and removed (src/kernel/netns.ts) around the bare plugin chain, the
 *   `bridge` plugin (which execs `host-local`) spawned with `ADD`, then
 *   `DEL`, on the same conflist;
 * - the library, in process (`CniProvider.add` + `delete`);
 * - the CLI, one `deno run src/cli/main.ts` process for `add` and one for
 *   `delete`, as an operator or a shell-script VM manager would.
 *
 * The existing VMs are made with real `add`s through the library (records,
 * netns, veth on the bridge, TAP, leases), once, in the first iteration of
 * the second group, outside the timed part. `BENCH_EXISTING_VMS` overrides
 * their number (default 1000; the bridge takes 1024 ports at most),
 * `BENCH_N` the iterations per bench (default 30).
 *
 * Root only, inside a throwaway host netns; everything else (netns with a
 * prefix unique to the run, temp dirs, a conflist of its own, the prefix
 * claim) is removed at the end, also on SIGINT/SIGTERM:
 *
 * `unshare --net -- deno bench --allow-ffi --allow-read --allow-write
 * --allow-run --allow-env --allow-sys bench/provider_bench.ts`
 *
 * @module
 */
import { CniProvider } from "../src/provider/provider.ts";
import {
  addExistingVms,
  benchIterations,
  BenchRun,
  checkExistingVms,
  cniFloor,
  existingVms,
  makeProviderSetup,
  mayRun,
  once,
  type ProviderSetup,
  removeRun,
  RUN_PREFIX,
  runCli,
} from "./_support.ts";

const EXISTING = existingVms();
/** Measured iterations per bench (`BENCH_N` overrides it). */
const N = benchIterations(30);
/**
 * Untimed rounds each bench runs before its first timed one. `deno bench`
 * 2.9.6 ignores the `warmup` option (`Deno.bench` overwrites it), so the
 * warmup is done here instead.
 */
const WARMUP = 3;

const NETWORK = {
  name: "benchnet",
  bridge: `vbb${Deno.pid.toString(36)}`.slice(0, 15),
  // A /16: room for the existing VMs and every benchmarked one.
  subnet: "10.240.0.0/16",
};

/** The run's dirs and settings, made once, and the provider on them. */
let setup: (ProviderSetup & { provider: CniProvider }) | undefined;

/** Every netns of the run (its veth with it), then the temp dir. */
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
  // Per add, chunk by chunk: do adds slow down as VMs pile up?
  const chunk = Math.max(1, Math.round(EXISTING / 5));
  const perChunk: string[] = [];
  let prev = 0;
  for (let start = 0; start < EXISTING; start += chunk) {
    const end = Math.min(start + chunk, EXISTING);
    perChunk.push(((ended[end - 1] - prev) / (end - start)).toFixed(1));
    prev = ended[end - 1];
  }
  console.log(
    `populate: ${EXISTING} VMs added through the library in ${
      (ms / 1000).toFixed(1)
    } s, ${(ms / EXISTING).toFixed(1)} ms per add; per add by ` +
      `${chunk}-VM chunk: ${perChunk.join(", ")} ms`,
  );
});

/** A group's tag in bench names and row labels: its number of VMs. */
function tagOf(group: string): string {
  return group.match(/(\d+) VMs/)![1];
}

/**
 * Medians, which `deno bench` does not print, and their ratio to the floor's
 * median of the same group (`deno bench`'s own warmup samples dropped).
 */
function printMedians(): void {
  const lines = ["medians (ms, ratio to the floor of the same group):"];
  for (const group of run.samples.keys()) {
    const m = run.medians(group);
    const base = m.get(`floor [${tagOf(group)}]`)?.median ?? NaN;
    for (const [label, { median, n }] of m) {
      // A bench an interruption kept from running has no row.
      if (!n) continue;
      lines.push(
        `  ${label.padEnd(16)} ${median.toFixed(1).padStart(7)}  x${
          (median / base).toFixed(2)
        }  (n=${n})`,
      );
    }
  }
  console.error(lines.join("\n"));
}

let seq = 0;

/** The three benches of one group; `before` runs untimed first. */
function register(group: string, before: () => Promise<void>): void {
  const tag = tagOf(group);

  run.bench(
    {
      name: `floor: netns + bridge/host-local ADD, DEL [${tag}]`,
      label: `floor [${tag}]`,
      group,
      baseline: true,
    },
    before,
    () => cniFloor(`${RUN_PREFIX}floor-${tag}-${seq++}`, setup!.bridgeConf, 1),
  );

  run.bench(
    {
      name: `library: add + delete [${tag}]`,
      label: `library [${tag}]`,
      group,
    },
    before,
    async () => {
      const vm = `lib-${tag}-${seq++}`;
      const p = setup!.provider;
      const [nic] = await p.add(vm, {}, {});
      const res = await p.delete([vm]);
      if (!nic?.ips.length) throw new Error(`${vm}: add gave no IP`);
      if (res.errors.length) throw new Error(JSON.stringify(res.errors));
    },
  );

  run.bench(
    {
      name: `CLI: vmnic add, vmnic delete [${tag}]`,
      label: `CLI [${tag}]`,
      group,
    },
    before,
    async () => {
      const vm = `cli-${tag}-${seq++}`;
      const flags = [...setup!.cliFlags, "--json"];
      await runCli(["add", vm, ...flags]);
      await runCli(["delete", vm, ...flags]);
    },
  );
}

if (mayRun("provider_bench")) {
  checkExistingVms(EXISTING, 1020);
  const s = makeProviderSetup(NETWORK, RUN_PREFIX);
  setup = { ...s, provider: await CniProvider.open(s.config) };
  run.install(printMedians);
  register("add+delete, 0 VMs", () => Promise.resolve());
  register(`add+delete, ${EXISTING} VMs`, populate);
}
