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
 * their number (default 1000; the bridge takes 1024 ports at most).
 *
 * Root only, inside a throwaway host netns; everything else (netns with a
 * prefix unique to the run, temp dirs, a conflist of its own) is removed at
 * the end, also on SIGINT/SIGTERM:
 *
 * `unshare --net -- deno bench --allow-ffi --allow-read --allow-write
 * --allow-run --allow-env --allow-sys bench/provider_bench.ts`
 *
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { listLinks } from "../src/kernel/link.ts";
import { createNetns, deleteNetns, listNetns } from "../src/kernel/netns.ts";
import { CniProvider } from "../src/provider/provider.ts";
import type { ProviderConfig } from "../src/provider/types.ts";
import { NetlinkSocket } from "../src/netlink/socket.ts";

const IS_ROOT = Deno.uid() === 0;
const EXISTING = Number(Deno.env.get("BENCH_EXISTING_VMS") ?? 1000);
/** Measured iterations per bench (`deno bench` adds one, which it discards). */
const N = 30;
/**
 * Untimed rounds each bench runs before its first timed one. `deno bench`
 * 2.9.6 ignores the `warmup` option (`Deno.bench` overwrites it) and always
 * runs exactly one warmup call, so the warmup is done here instead.
 */
const WARMUP = 3;

const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));
const CLI_MAIN = join(REPO_ROOT, "src/cli/main.ts");
/** deno.json's `vmnic` task permissions. */
const CLI_PERMISSIONS = [
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-run",
  "--allow-env",
  "--allow-sys=hostname,uid",
];
const CNI_BIN = "/usr/lib/cni";
const NETWORK = "benchnet";
// Unique to the run, so a sweep by prefix touches nothing else.
const PREFIX = `vmnicb${Deno.pid.toString(36)}-`;
const BRIDGE = `vbb${Deno.pid.toString(36)}`.slice(0, 15);
// A /16: room for the existing VMs and every benchmarked one.
const SUBNET = "10.240.0.0/16";

const dec = new TextDecoder();
const enc = new TextEncoder();

/** The run's dirs and settings, made once. */
interface Setup {
  dir: string;
  config: ProviderConfig;
  cliFlags: string[];
  /** The bridge plugin's config as the floor feeds it (name/cniVersion in). */
  bridgeConf: Record<string, unknown>;
  provider: CniProvider;
}

let setup: Setup | undefined;
let cleanedUp = false;
/** Set by SIGINT/SIGTERM: no new operation starts. */
let stopping = false;
/** The operation running now (a timed round or a populate add). */
let inflight: Promise<unknown> | undefined;
/** Longest wait for the operation in flight when interrupted. */
const STOP_WAIT_MS = 20_000;

/** Runs one operation as the one in flight, unless the run is stopping. */
function track<T>(op: () => Promise<T>): Promise<T> {
  if (stopping) return Promise.reject(new Error("interrupted"));
  const p = op();
  inflight = p;
  return p;
}

/**
 * On SIGINT/SIGTERM: let the operation in flight finish (a CLI child or a
 * plugin could otherwise make a netns or a lease after the sweep), then
 * clean up; every operation after that is refused, so the run ends.
 */
async function onSignal(): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.error("interrupted: finishing the operation in flight");
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    inflight?.catch(() => {}),
    new Promise((r) => timer = setTimeout(r, STOP_WAIT_MS)),
  ]);
  clearTimeout(timer);
  cleanup();
  // Deno.exit is refused while `deno bench` 2.9.6 runs (its exit sanitizer
  // stays armed): the benches left fail at once instead ("interrupted").
}

function makeSetup(): Setup {
  const dir = Deno.makeTempDirSync({ prefix: "vmnic-bench-" });
  const rootDir = join(dir, "root");
  const runDir = join(dir, "run");
  const cniConfDir = join(dir, "net.d");
  // Never created: no executable hooks.
  const hooksDir = join(dir, "hooks.d");
  Deno.mkdirSync(cniConfDir);
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
  const config: ProviderConfig = {
    rootDir,
    runDir,
    cniConfDir,
    cniBinDirs: [CNI_BIN],
    netnsPrefix: PREFIX,
    hooksDir,
    tsHooks: false,
  };
  const cliFlags = [
    `--root-dir=${rootDir}`,
    `--run-dir=${runDir}`,
    `--cni-conf-dir=${cniConfDir}`,
    `--cni-bin-dir=${CNI_BIN}`,
    `--netns-prefix=${PREFIX}`,
    `--hooks-dir=${hooksDir}`,
  ];
  const bridgeConf = {
    ...conflist.plugins[0],
    name: conflist.name,
    cniVersion: conflist.cniVersion,
  };
  return { dir, config, cliFlags, bridgeConf, provider: undefined! };
}

/**
 * Synchronous, so it can run from `unload` and signal handlers: every netns
 * with the run's prefix goes (its veth with it; the bridge lives in the
 * throwaway host netns), then the temp dir with records and leases.
 */
function cleanup(): void {
  if (cleanedUp || !setup) return;
  cleanedUp = true;
  try {
    setup.provider?.close();
  } catch { /* closing is best effort; the dir goes below */ }
  let removed = 0;
  for (const name of listNetns()) {
    if (!name.startsWith(PREFIX)) continue;
    try {
      deleteNetns(name);
      removed++;
    } catch (e) {
      console.error(`cleanup: netns ${name}: ${e}`);
    }
  }
  Deno.removeSync(setup.dir, { recursive: true });
  console.error(`cleanup: ${removed} netns and ${setup.dir} removed`);
}

/**
 * True when this process's netns holds nothing but `lo`, as a fresh
 * `unshare --net` gives: the bench's bridge and subnet must never land in
 * a netns that has real interfaces (the host's). PID 1's netns cannot be
 * compared with: /proc/1/ns is EACCES in some containers, even for root.
 */
function inThrowawayNetns(): boolean {
  const sock = NetlinkSocket.open();
  try {
    return listLinks(sock).every((l) => l.name === "lo");
  } finally {
    sock.close();
  }
}

let populated: Promise<void> | undefined;

/** Makes the existing VMs once (real adds), reporting how long they took. */
function populate(): Promise<void> {
  populated ??= (async () => {
    const p = setup!.provider;
    const chunk = Math.max(1, Math.round(EXISTING / 5));
    const perChunk: string[] = [];
    const t0 = performance.now();
    let tc = t0;
    for (let i = 0; i < EXISTING; i++) {
      const [nic] = await track(() => p.add(`existing-${i}`, {}, {}));
      if (!nic?.ips.length) throw new Error(`existing-${i}: no IP`);
      if ((i + 1) % chunk === 0 || i + 1 === EXISTING) {
        const now = performance.now();
        const size = (i % chunk) + 1;
        perChunk.push(`${((now - tc) / size).toFixed(1)}`);
        tc = now;
      }
    }
    const ms = performance.now() - t0;
    console.log(
      `populate: ${EXISTING} VMs added through the library in ${
        (ms / 1000).toFixed(1)
      } s, ${(ms / EXISTING).toFixed(1)} ms per add; per add by ` +
        `${chunk}-VM chunk: ${perChunk.join(", ")} ms`,
    );
  })();
  return populated;
}

/** Every timed sample per bench; the first is `deno bench`'s warmup. */
const samples = new Map<string, number[]>();

/**
 * Registers one bench whose `round` is timed with explicit timers, so the
 * group's untimed `before` and the warmup rounds stay out of the figures.
 */
function bench(
  opts: { name: string; key: string; group: string; baseline?: boolean },
  before: () => Promise<void>,
  round: () => Promise<void>,
): void {
  let warmed = false;
  Deno.bench({
    name: opts.name,
    group: opts.group,
    baseline: opts.baseline ?? false,
    n: N,
    warmup: WARMUP,
    async fn(b) {
      await before();
      if (!warmed) {
        for (let i = 0; i < WARMUP; i++) await track(round);
        warmed = true;
      }
      b.start();
      const t0 = performance.now();
      await track(round);
      const ms = performance.now() - t0;
      b.end();
      samples.set(opts.key, [...samples.get(opts.key) ?? [], ms]);
    },
  });
}

/**
 * Medians, which `deno bench` does not print, and their ratio to the floor's
 * median of the same group (`deno bench`'s own warmup sample dropped).
 */
function printMedians(): void {
  const median = (xs: number[]) => {
    const s = xs.slice(1).sort((a, b) => a - b);
    if (!s.length) return NaN;
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  };
  const lines = ["medians (ms, ratio to the floor of the same group):"];
  for (const [key, xs] of samples) {
    const tag = key.match(/\[(\d+)\]/)![1];
    const base = median(samples.get(`floor [${tag}]`) ?? []);
    const m = median(xs);
    lines.push(
      `  ${key.padEnd(16)} ${m.toFixed(1).padStart(7)}  x${
        (m / base).toFixed(2)
      }  (n=${xs.length - 1})`,
    );
  }
  console.error(lines.join("\n"));
}

let seq = 0;

/** The three benches of one group; `before` runs untimed first. */
function register(group: string, before: () => Promise<void>): void {
  const tag = group.match(/(\d+) VMs/)![1];

  bench(
    {
      name: `floor: netns + bridge/host-local ADD, DEL [${tag}]`,
      key: `floor [${tag}]`,
      group,
      baseline: true,
    },
    before,
    () => floor(`floor-${tag}-${seq++}`),
  );

  bench(
    { name: `library: add + delete [${tag}]`, key: `library [${tag}]`, group },
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

  bench(
    {
      name: `CLI: vmnic add, vmnic delete [${tag}]`,
      key: `CLI [${tag}]`,
      group,
    },
    before,
    async () => {
      const vm = `cli-${tag}-${seq++}`;
      await cli("add", vm);
      await cli("delete", vm);
    },
  );
}

/** What any provider pays: netns, the plugin chain's ADD and DEL, netns gone. */
async function floor(id: string): Promise<void> {
  const name = PREFIX + id;
  const path = createNetns(name);
  try {
    const env = {
      CNI_CONTAINERID: name,
      CNI_NETNS: path,
      CNI_IFNAME: "eth0",
      CNI_PATH: CNI_BIN,
    };
    const conf = setup!.bridgeConf;
    const result = await plugin("ADD", env, conf);
    // DEL gets the ADD result as prevResult, as libcni (and vmnic) give it.
    await plugin("DEL", env, { ...conf, prevResult: JSON.parse(result) });
  } finally {
    deleteNetns(name);
  }
}

async function plugin(
  command: string,
  env: Record<string, string>,
  conf: Record<string, unknown>,
): Promise<string> {
  const child = new Deno.Command(join(CNI_BIN, "bridge"), {
    env: { ...env, CNI_COMMAND: command },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(enc.encode(JSON.stringify(conf)));
  await w.close();
  const out = await child.output();
  const stdout = dec.decode(out.stdout);
  if (!out.success) {
    throw new Error(`bridge ${command}: ${stdout}${dec.decode(out.stderr)}`);
  }
  return stdout;
}

/** One CLI process, as `deno task vmnic` runs it, without VMNIC_* settings. */
async function cli(command: string, vm: string): Promise<void> {
  const env = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) =>
      !k.startsWith("VMNIC_")
    ),
  );
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...CLI_PERMISSIONS,
      CLI_MAIN,
      command,
      vm,
      ...setup!.cliFlags,
      "--json",
    ],
    cwd: REPO_ROOT,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(
      `vmnic ${command} ${vm} exited ${out.code}: ${dec.decode(out.stderr)}${
        dec.decode(out.stdout)
      }`,
    );
  }
}

if (!IS_ROOT) {
  console.error(
    "provider_bench: skipped, needs root (run it inside `unshare --net`)",
  );
} else if (!inThrowawayNetns()) {
  console.error(
    "provider_bench: skipped, run it inside a throwaway netns " +
      "(`unshare --net -- deno bench ...`): it makes a bridge and a subnet",
  );
} else {
  if (!Number.isInteger(EXISTING) || EXISTING < 1 || EXISTING > 1020) {
    throw new Error(`BENCH_EXISTING_VMS=${EXISTING}: 1–1020 (bridge ports)`);
  }
  setup = makeSetup();
  setup.provider = await CniProvider.open(setup.config);
  globalThis.addEventListener("unload", () => {
    printMedians();
    cleanup();
  });
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(sig, onSignal);
  }
  register("add+delete, 0 VMs", () => Promise.resolve());
  register(`add+delete, ${EXISTING} VMs`, populate);
}
