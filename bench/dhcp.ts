/**
 * Add (and delete) time of a one-NIC VM with `dhcp` IPAM against
 * `host-local` on one host (issue 14's benchmark; docs/multihost.md quotes
 * it). Both networks are Debian's `bridge` plugin on a bridge of their own;
 * the dhcp one reaches Kea (its leases in PostgreSQL, both of the run's
 * own) through CNI's `dhcp` daemon, Kea serving from a namespace beside
 * the host on a veth to the bridge. The library in process (one
 * `CniProvider`), rounds alternating between the two networks (which goes
 * first alternates too).
 *
 * Also counted: the adds in which the dhcp daemon's first DISCOVER failed
 * with "network is down" and it retried after its fixed 2 ± 1 s (it binds
 * its packet socket before it sets the new veth up; plugins before 1.6.0).
 *
 * Root only, inside a throwaway host netns (`deno task bench:dhcp` runs it
 * under `unshare --net`); everything it starts is stopped by pid, its
 * netns, temp dir and prefix claim removed, also on SIGINT. `BENCH_N` sets
 * the rounds per network (default 20).
 *
 * @module
 */
import { join } from "node:path";
import { CniProvider } from "../src/provider/provider.ts";
import { claimPath } from "../src/provider/ownership.ts";
import { DEFAULT_NETNS_DIR } from "../src/wiring/kernel.ts";
import {
  DhcpDaemon,
  Kea,
  OVERLAY_NET,
  OVERLAY_PREFIX,
  Postgres,
} from "../tests/multihost/_cluster.ts";
import { removeNetnsWithPrefix, sh } from "../tests/support/harness.ts";
import {
  benchIterations,
  CNI_BIN,
  inThrowawayNetns,
  RUN_PREFIX,
} from "./_support.ts";

const N = benchIterations(20);
/** Rounds run untimed first. */
const WARMUP = 2;
/** Kea's timers: long enough that no renewal falls in the run. */
const TIMES = { renew: 1800, rebind: 3150, valid: 3600 };
const NETS = {
  dhcp: { name: "bdhcp", bridge: "vbdhcp" },
  local: { name: "blocal", bridge: "vblocal", subnet: "10.214.0.0/24" },
} as const;

if (Deno.uid() !== 0 || !inThrowawayNetns()) {
  console.error(
    "bench/dhcp.ts: needs root inside a throwaway netns: run `deno task bench:dhcp`",
  );
  Deno.exit(2);
}

const dir = await Deno.makeTempDir({ prefix: "vmnic-bench-dhcp-" });
// PostgreSQL runs as its own user: it must reach its dir below.
await Deno.chmod(dir, 0o711);
const svc = `${RUN_PREFIX}svc`;
const config = {
  rootDir: join(dir, "root"),
  runDir: join(dir, "run"),
  cniConfDir: join(dir, "net.d"),
  cniBinDirs: [CNI_BIN],
  netnsPrefix: RUN_PREFIX,
  hooksDir: join(dir, "hooks.d"),
  policyFile: join(dir, "policy.json"),
  tsHooks: false,
};
let pg: Postgres | undefined;
let kea: Kea | undefined;
let daemon: DhcpDaemon | undefined;
let provider: CniProvider | undefined;

async function cleanup(): Promise<void> {
  try {
    if (provider) {
      const vms = (await provider.vms()).map((v) => v.vmId);
      if (vms.length) await provider.delete(vms, { force: true });
      provider.close();
    }
  } catch { /* the netns go below */ }
  await daemon?.stop().catch(() => {});
  await kea?.stop().catch(() => {});
  await pg?.stop().catch(() => {});
  await removeNetnsWithPrefix(RUN_PREFIX).catch(() => {});
  await Deno.remove(claimPath(DEFAULT_NETNS_DIR, RUN_PREFIX)).catch(() => {});
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(sig, () => {
    void cleanup().finally(() => Deno.exit(130));
  });
}

function pct(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

try {
  // The host: two bridges; Kea beside it on a veth to the dhcp bridge.
  for (const b of [NETS.dhcp.bridge, NETS.local.bridge]) {
    await sh("ip", "link", "add", b, "type", "bridge");
    await sh("ip", "link", "set", b, "up");
  }
  await sh("ip", "netns", "add", svc);
  await sh("ip", "-n", svc, "link", "set", "lo", "up");
  await sh(
    "ip",
    "link",
    "add",
    "ksvc",
    "type",
    "veth",
    "peer",
    "name",
    "k0",
    "netns",
    svc,
  );
  await sh("ip", "link", "set", "ksvc", "master", NETS.dhcp.bridge, "up");
  await sh(
    "ip",
    "-n",
    svc,
    "addr",
    "add",
    `${OVERLAY_NET}.1/${OVERLAY_PREFIX}`,
    "dev",
    "k0",
  );
  await sh("ip", "-n", svc, "link", "set", "k0", "up");
  pg = await Postgres.start(join(dir, "pg"));
  kea = await Kea.start({
    dir: join(dir, "kea"),
    netns: svc,
    iface: "k0",
    pg,
    times: TIMES,
  });
  await Deno.mkdir(join(dir, "dhcpd"));
  daemon = await DhcpDaemon.start(null, join(dir, "dhcpd"));
  await Deno.mkdir(config.cniConfDir);
  const conflist = (
    net: { name: string; bridge: string },
    ipam: Record<string, unknown>,
  ) =>
    JSON.stringify({
      cniVersion: "1.0.0",
      name: net.name,
      plugins: [{
        type: "bridge",
        bridge: net.bridge,
        isGateway: false,
        ipMasq: false,
        ipam,
      }],
    });
  await Deno.writeTextFile(
    join(config.cniConfDir, `10-${NETS.dhcp.name}.conflist`),
    conflist(NETS.dhcp, { type: "dhcp", daemonSocketPath: daemon.socket }),
  );
  await Deno.writeTextFile(
    join(config.cniConfDir, `20-${NETS.local.name}.conflist`),
    conflist(NETS.local, {
      type: "host-local",
      ranges: [[{ subnet: NETS.local.subnet }]],
      dataDir: join(dir, "ipam"),
    }),
  );
  provider = await CniProvider.open(config);
  const p = provider;

  const times = {
    dhcp: { add: [] as number[], del: [] as number[] },
    local: { add: [] as number[], del: [] as number[] },
  };
  let vm = 0;
  let retried = 0;
  for (let round = 0; round < WARMUP + N; round++) {
    const order = round % 2 ? ["local", "dhcp"] as const : [
      "dhcp",
      "local",
    ] as const;
    for (const which of order) {
      const id = `b${vm++}`;
      const downBefore = which === "dhcp"
        ? (await daemon.text()).split("network is down").length
        : 0;
      const t0 = performance.now();
      const [nic] = await p.add(id, { network: NETS[which].name });
      const t1 = performance.now();
      await p.delete([id]);
      const t2 = performance.now();
      if (!nic.ips.length) throw new Error(`${id}: no address`);
      if (round < WARMUP) continue;
      times[which].add.push(t1 - t0);
      times[which].del.push(t2 - t1);
      if (
        which === "dhcp" &&
        (await daemon.text()).split("network is down").length > downBefore
      ) retried++;
    }
  }
  const leftover = await pg.leases();
  console.log(
    "| IPAM | add p50 ms | add p90 ms | add max ms | delete p50 ms | delete p90 ms |\n|---|---:|---:|---:|---:|---:|",
  );
  for (
    const [label, t] of [["host-local", times.local], [
      "dhcp (Kea + PostgreSQL)",
      times.dhcp,
    ]] as const
  ) {
    console.log(
      `| ${label} | ${pct(t.add, 50).toFixed(1)} | ${
        pct(t.add, 90).toFixed(1)
      } | ${Math.max(...t.add).toFixed(1)} | ${pct(t.del, 50).toFixed(1)} | ${
        pct(t.del, 90).toFixed(1)
      } |`,
    );
  }
  const fast = times.dhcp.add.filter((x) => x < 1000);
  console.log("");
  console.log(
    `- dhcp adds in which the daemon's first DISCOVER failed with "network is down" and it retried after 2 ± 1 s: ${retried} of ${N}` +
      (fast.length
        ? `; the ${fast.length} others: p50 ${pct(fast, 50).toFixed(1)} ms`
        : ""),
  );
  console.log(
    `- leases left in Kea after the run: ${leftover.length} (every delete released its lease)`,
  );
  console.log(
    `\n(${N} rounds per network after ${WARMUP} untimed, alternating; ${
      new Date().toISOString()
    })`,
  );
} finally {
  await cleanup();
}
