/**
 * Test fixture of the provider and CLI integration tests: one isolated
 * vmnic installation per test (its own netns prefix, temp dirs, a conflist
 * with a bridge and subnet of its own, host-local leases inside the temp
 * dir), a runner for the CLI as a separate process, and a cleanup that
 * leaves nothing behind.
 *
 * @module
 */
import { join } from "node:path";
import { CniProvider } from "../../src/provider/provider.ts";
import { resolveConfig } from "../../src/provider/config.ts";
import { claimPath } from "../../src/provider/ownership.ts";
import type { ProviderConfig } from "../../src/provider/types.ts";
import {
  ipJson,
  netnsNames,
  removeNetnsWithPrefix,
  run,
  type RunResult,
  uniquePrefix,
} from "../support/harness.ts";

import {
  CLI_MAIN,
  CLI_PERMISSIONS,
  REPO_ROOT,
  SYSTEM_CNI_BIN,
} from "../support/cli.ts";

/** Output of one CLI process. */
export type CliResult = RunResult;

/** Options of {@linkcode makeFixture}. */
export interface FixtureOptions {
  /** Second octet of the test's subnet (10.<octet>.<random>.0/24). */
  octet: number;
  /** Plugins chained after the bridge plugin (e.g. a failing fake). */
  extraPlugins?: Record<string, unknown>[];
  /** Executables to put in a temp bin dir searched before /usr/lib/cni. */
  fakePlugins?: Record<string, string>;
}

/** One isolated vmnic installation. */
export interface Fixture {
  prefix: string;
  dir: string;
  rootDir: string;
  runDir: string;
  cniConfDir: string;
  hooksDir: string;
  /** host-local's `dataDir` (one subdir per network). */
  ipamDir: string;
  /** host-local's lease dir of the network. */
  leaseDir: string;
  binDir: string;
  bridge: string;
  /** e.g. `10.201.37.0/24` */
  subnet: string;
  /** The conflist's network name. */
  network: string;
  /** Library settings. */
  config: ProviderConfig;
  /** The same settings as CLI flags. */
  flags: string[];
  /** Runs the CLI with the fixture's flags (and `--json` unless `json: false`) before `args`. */
  cli(args: string[], opts?: { json?: boolean }): Promise<CliResult>;
  /** Runs the CLI with `--json`, asserts exit 0 and parses stdout. */
  cliOk<T = unknown>(args: string[]): Promise<T>;
  /** Opens a provider on the fixture (close it after). */
  provider(): Promise<CniProvider>;
  /** IP addresses host-local holds a lease file for (the fixture's network by default). */
  leasedIps(network?: string): Promise<string[]>;
  /** netns names carrying the prefix (prefix stripped). */
  netns(): Promise<string[]>;
  /** Deletes every recorded VM, every netns with the prefix, the bridge and the temp dir. */
  cleanup(): Promise<void>;
}

/** Brings `lo` up in the test's throwaway host netns (idempotent). */
async function loUp(): Promise<void> {
  await run("ip", ["link", "set", "lo", "up"]);
}

/** A random integer in [0, n). */
function randomBelow(n: number): number {
  return crypto.getRandomValues(new Uint32Array(1))[0] % n;
}

/** Makes an isolated vmnic installation; call `cleanup()` in `finally`. */
export async function makeFixture(
  tag: string,
  opts: FixtureOptions,
): Promise<Fixture> {
  await loUp();
  const prefix = uniquePrefix(tag);
  const dir = await Deno.makeTempDir({ prefix: "vmnic-it-" });
  const rootDir = join(dir, "root");
  const runDir = join(dir, "run");
  const cniConfDir = join(dir, "net.d");
  // Never created: an absent hooks dir means no executable hooks.
  const hooksDir = join(dir, "hooks.d");
  const binDir = join(dir, "bin");
  const ipamDir = join(dir, "ipam");
  const network = `net-${tag}`;
  const bridge = `vb${tag}${randomBelow(36 ** 4).toString(36)}`.slice(0, 15);
  const subnet = `10.${opts.octet}.${randomBelow(250) + 1}.0/24`;
  await Deno.mkdir(cniConfDir, { recursive: true });
  await Deno.mkdir(binDir, { recursive: true });
  for (const [name, text] of Object.entries(opts.fakePlugins ?? {})) {
    await Deno.writeTextFile(join(binDir, name), text, { mode: 0o755 });
  }
  await Deno.writeTextFile(
    join(cniConfDir, `10-${network}.conflist`),
    JSON.stringify({
      cniVersion: "1.0.0",
      name: network,
      plugins: [
        {
          type: "bridge",
          bridge,
          isGateway: true,
          ipMasq: false,
          ipam: {
            type: "host-local",
            ranges: [[{ subnet }]],
            routes: [{ dst: "0.0.0.0/0" }],
            dataDir: ipamDir,
          },
        },
        ...(opts.extraPlugins ?? []),
      ],
    }),
  );
  const config: ProviderConfig = {
    rootDir,
    runDir,
    cniConfDir,
    cniBinDirs: [binDir, SYSTEM_CNI_BIN],
    netnsPrefix: prefix,
    hooksDir,
    tsHooks: false,
  };
  const flags = [
    `--root-dir=${rootDir}`,
    `--run-dir=${runDir}`,
    `--cni-conf-dir=${cniConfDir}`,
    `--cni-bin-dir=${binDir}:${SYSTEM_CNI_BIN}`,
    `--netns-prefix=${prefix}`,
    `--hooks-dir=${hooksDir}`,
  ];
  const leaseDir = join(ipamDir, network);

  const fx: Fixture = {
    prefix,
    dir,
    rootDir,
    runDir,
    cniConfDir,
    hooksDir,
    ipamDir,
    leaseDir,
    binDir,
    bridge,
    subnet,
    network,
    config,
    flags,
    // Settings first: after a `--` in `args` they would be positionals.
    cli: (args, o = {}) =>
      runCli([...flags, ...(o.json === false ? [] : ["--json"]), ...args]),
    async cliOk<T>(args: string[]): Promise<T> {
      const r = await fx.cli(args);
      if (r.code !== 0) {
        throw new Error(
          `vmnic ${args.join(" ")} exited ${r.code}: ${r.stderr}${r.stdout}`,
        );
      }
      return JSON.parse(r.stdout) as T;
    },
    provider: () => CniProvider.open(config),
    leasedIps: async (net = network) => {
      const out: string[] = [];
      try {
        for await (const e of Deno.readDir(join(ipamDir, net))) {
          if (/^[0-9.]+$|:/.test(e.name)) out.push(e.name);
        }
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
      return out.sort();
    },
    netns: async () =>
      (await netnsNames()).filter((n) => n.startsWith(prefix)).map((n) =>
        n.slice(prefix.length)
      ).sort(),
    async cleanup() {
      try {
        const p = await fx.provider();
        try {
          const vms = (await p.vms()).map((v) => v.vmId);
          if (vms.length) await p.delete(vms, { force: true });
        } finally {
          p.close();
        }
      } catch { /* best effort: the netns and dirs go below anyway */ }
      await removeNetnsWithPrefix(prefix);
      await run("ip", ["link", "del", bridge]);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      // The claim on the test's prefix (docs/state-machine.md, "Ownership").
      await Deno.remove(claimPath(resolveConfig(config).netnsDir, prefix))
        .catch(() => {});
    },
  };
  return fx;
}

/** Runs `src/cli/main.ts` as its own process, without VMNIC_* settings. */
export async function runCli(args: string[]): Promise<CliResult> {
  const env = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) =>
      !k.startsWith("VMNIC_")
    ),
  );
  return await run(Deno.execPath(), [
    "run",
    ...CLI_PERMISSIONS,
    CLI_MAIN,
    ...args,
  ], {
    cwd: REPO_ROOT,
    env,
    clearEnv: true,
  });
}

/** The links of a netns (`ip -j -d link`), by name. */
export async function linksOf(
  ns: string,
): Promise<Map<string, Record<string, unknown>>> {
  const links = await ipJson("-n", ns, "-d", "link");
  return new Map(links.map((l) => [String(l.ifname), l]));
}

/** Host veths enslaved to `bridge` in the test's netns. */
export async function vethsOnBridge(bridge: string): Promise<string[]> {
  const links = await ipJson("-d", "link");
  return links.filter((l) =>
    l.master === bridge &&
    (l.linkinfo as { info_kind?: string } | undefined)?.info_kind === "veth"
  ).map((l) => String(l.ifname));
}
