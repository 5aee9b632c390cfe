/**
 * Which order of netns removal and CNI DEL deletes a VM's network fastest
 * while still correct: when the operation returns, IPAM has released the
 * addresses and no host veth is left on the bridge.
 *
 * Each round makes, untimed, a netns (src/kernel/netns.ts) with NICs as
 * vmnic makes them: `bridge`/`host-local` ADD, then the veth handed over and
 * a TAP wired to it (src/wiring/nic.ts). Then, timed, one of:
 * - "DEL, netns" (vmnic today): CNI DEL per NIC with the netns present (the
 *   plugin deletes the veth pair itself), then the netns (the TAP goes with
 *   it);
 * - "netns, DEL, wait": the netns first (the kernel destroys veth and TAP
 *   on its own, asynchronously), then CNI DEL (no netns: the plugin only
 *   releases IPAM), then polling every host veth by name until it is gone
 *   (up to 2 s), since returning earlier would leave it behind. The moment
 *   CNI DEL returned, and how often a host veth was still there then, are
 *   reported too;
 * - "unplumb, DEL, netns" (vmnic before it let the TAP go with the netns):
 *   TC wiring and TAP removed first, then as "DEL, netns".
 * After each round it checks, untimed, that every lease file is gone and
 * no host veth is left (for "netns, DEL, wait": within the 2 s).
 *
 * Groups: 1 and 4 NICs per VM, at 0 and at 1000 existing VMs (netns with a
 * veth on the same bridge, made once with bare ADDs; `BENCH_EXISTING_VMS`
 * overrides their number, `BENCH_N` the iterations per bench).
 *
 * Root only, inside a throwaway host netns; every netns (prefix unique to
 * the run) and the temp dir go at the end, also on SIGINT/SIGTERM:
 *
 * `unshare --net -- deno bench --allow-ffi --allow-read --allow-write
 * --allow-run --allow-env --allow-sys bench/delete_order_bench.ts`
 *
 * @module
 */
import { join } from "node:path";
import { getLinkByName } from "../src/kernel/link.ts";
import { createNetns, deleteNetns } from "../src/kernel/netns.ts";
import { NetlinkSocket } from "../src/netlink/socket.ts";
import { hostKernel } from "../src/wiring/kernel.ts";
import { plumbNic, unplumbNic } from "../src/wiring/nic.ts";
import {
  benchIterations,
  BenchRun,
  bridgePluginConf,
  checkExistingVms,
  cniEnv,
  execPlugin,
  existingVms,
  mayRun,
  median,
  once,
  removeRun,
  RUN_PREFIX,
} from "./_support.ts";

const EXISTING = existingVms();
/** Measured iterations per bench (`BENCH_N` overrides it). */
const N = benchIterations(20);
/** Extra untimed rounds in each bench's first call. */
const WARMUP = 1;
/** How long "netns, DEL, wait" waits for the kernel to drop a host veth. */
const VETH_GONE_TIMEOUT_MS = 2_000;

const NETWORK = {
  name: "delnet",
  bridge: `vbd${Deno.pid.toString(36)}`.slice(0, 15),
  subnet: "10.242.0.0/16",
};

let dir = "";
let conf: Record<string, unknown> = {};
/** A netlink socket in the bench's own netns, where the bridge is. */
let hostSock: NetlinkSocket | undefined;

/** Every netns of the run (its veths go with it), then the temp dir. */
function cleanup(): void {
  if (dir) removeRun(RUN_PREFIX, dir, () => hostSock?.close());
}

const run = new BenchRun(N, WARMUP, cleanup);

/** One NIC made by a round's setup. */
interface Nic {
  ifName: string;
  tap: string;
  /** The host end of the veth pair, from the CNI result. */
  hostVeth: string;
  /** Lease files host-local keeps, one per address. */
  leases: string[];
  result: unknown;
}

/** A VM's netns with `nics` NICs, as vmnic's add leaves it. */
async function makeVm(
  id: string,
  nics: number,
  plumb: boolean,
): Promise<{ name: string; path: string; nics: Nic[] }> {
  const name = RUN_PREFIX + id;
  const path = createNetns(name);
  const out: Nic[] = [];
  for (let i = 0; i < nics; i++) {
    const ifName = `eth${i}`;
    const result = JSON.parse(
      await execPlugin("bridge", "ADD", cniEnv(name, path, ifName), conf),
    );
    const ifaces = result.interfaces as { name: string; sandbox?: string }[];
    const host = ifaces.find((x) => !x.sandbox && x.name !== NETWORK.bridge);
    if (!host) throw new Error(`${name}/${ifName}: no host veth in result`);
    const leases = (result.ips as { address: string }[]).map((ip) =>
      join(dir, "ipam", NETWORK.name, ip.address.split("/")[0])
    );
    out.push({ ifName, tap: `tap${i}`, hostVeth: host.name, leases, result });
    if (plumb) {
      hostKernel.inNetns(
        path,
        (scope) => plumbNic(scope, { veth: ifName, tap: `tap${i}`, queues: 1 }),
      );
    }
  }
  return { name, path, nics: out };
}

/** CNI DEL of every NIC, last first, with its ADD result as prevResult. */
async function cniDel(
  vm: { name: string; path: string; nics: Nic[] },
): Promise<void> {
  for (const nic of [...vm.nics].reverse()) {
    await execPlugin("bridge", "DEL", cniEnv(vm.name, vm.path, nic.ifName), {
      ...conf,
      prevResult: nic.result,
    });
  }
}

function hostVethsLeft(nics: Nic[]): string[] {
  return nics.map((n) => n.hostVeth).filter((v) =>
    getLinkByName(hostSock!, v) !== null
  );
}

function leasesLeft(nics: Nic[]): string[] {
  return nics.flatMap((n) => n.leases).filter((f) => {
    try {
      Deno.statSync(f);
      return true;
    } catch {
      return false;
    }
  });
}

/** Side figures of "netns, DEL, wait", per group. */
const returned = new Map<string, { ms: number[]; vethLeft: boolean[] }>();

let seq = 0;

/** The three orders for VMs of `nics` NICs. */
function register(group: string, nics: number, before: () => Promise<void>) {
  const side = { ms: [] as number[], vethLeft: [] as boolean[] };
  returned.set(group, side);
  const orders: {
    label: string;
    baseline?: boolean;
    del: (vm: Awaited<ReturnType<typeof makeVm>>) => Promise<void>;
  }[] = [
    {
      label: "DEL, netns",
      baseline: true,
      del: async (vm) => {
        await cniDel(vm);
        deleteNetns(vm.name);
      },
    },
    {
      label: "netns, DEL, wait",
      del: async (vm) => {
        const t0 = performance.now();
        deleteNetns(vm.name);
        await cniDel(vm);
        side.ms.push(performance.now() - t0);
        side.vethLeft.push(hostVethsLeft(vm.nics).length > 0);
        const deadline = t0 + VETH_GONE_TIMEOUT_MS;
        while (hostVethsLeft(vm.nics).length) {
          if (performance.now() > deadline) return;
          await new Promise((r) => setTimeout(r, 1));
        }
      },
    },
    {
      label: "unplumb, DEL, netns",
      del: async (vm) => {
        hostKernel.inNetns(vm.path, ({ conn }) => {
          for (const n of vm.nics) {
            unplumbNic(conn, { veth: n.ifName, tap: n.tap });
          }
        });
        await cniDel(vm);
        deleteNetns(vm.name);
      },
    },
  ];
  for (const o of orders) {
    run.bench(
      {
        name: `${o.label} [${group}]`,
        label: o.label,
        group,
        baseline: o.baseline,
        selfTimed: true,
      },
      before,
      async (clock) => {
        const vm = await makeVm(`del-${seq++}`, nics, true);
        clock.start();
        await o.del(vm);
        clock.end();
        const veths = hostVethsLeft(vm.nics);
        const leases = leasesLeft(vm.nics);
        if (veths.length || leases.length) {
          throw new Error(
            `${o.label}: left behind: veths [${veths}], leases [${leases}]`,
          );
        }
      },
    );
  }
}

/** The existing VMs: a netns with a veth on the bridge each (bare ADDs). */
const populate = once(async () => {
  const t0 = performance.now();
  for (let i = 0; i < EXISTING; i++) {
    await run.track(() => makeVm(`existing-${i}`, 1, false));
  }
  console.log(
    `populate: ${EXISTING} netns with a veth on the bridge in ${
      ((performance.now() - t0) / 1000).toFixed(1)
    } s`,
  );
});

function printMedians(): void {
  const lines = [
    'medians (ms; ratio to "DEL, netns"; for "netns, DEL, wait" also ' +
    "when CNI DEL returned and in how many rounds a host veth was still " +
    "there then):",
  ];
  for (const group of run.samples.keys()) {
    const m = run.medians(group);
    const base = m.get("DEL, netns")!.median;
    lines.push(`  ${group}`);
    for (const [label, { median: ms, n }] of m) {
      let extra = "";
      if (label === "netns, DEL, wait") {
        const side = returned.get(group)!;
        // The last n rounds are the timed ones, as for the medians.
        const left = side.vethLeft.slice(-n).filter((x) => x).length;
        extra = `  (DEL returned at ${
          median(side.ms.slice(-n)).toFixed(1)
        } ms; host veth still there then in ${left}/${n} rounds)`;
      }
      lines.push(
        `    ${label.padEnd(20)} ${ms.toFixed(1).padStart(7)}  x${
          (ms / base).toFixed(2)
        }  (n=${n})${extra}`,
      );
    }
  }
  console.error(lines.join("\n"));
}

if (mayRun("delete_order_bench")) {
  checkExistingVms(EXISTING, 1000);
  dir = Deno.makeTempDirSync({ prefix: "vmnic-bench-" });
  conf = bridgePluginConf(NETWORK, join(dir, "ipam"));
  hostSock = NetlinkSocket.open();
  run.install(printMedians);
  const none = () => Promise.resolve();
  for (const [existing, before] of [[0, none], [EXISTING, populate]] as const) {
    register(`1 NIC, ${existing} VMs`, 1, before);
    register(`4 NICs, ${existing} VMs`, 4, before);
  }
}
