/**
 * Several vmnic "hosts" on one machine, for tests/multihost and
 * bench/dhcp.ts (docs/multihost.md). Each host is a network namespace with
 * its own bridge (`vmbr0`) and its own vmnic install (root dir, run dir,
 * conflist dir, netns prefix); vmnic runs inside it as a CLI process
 * (`nsenter --net`). The hosts are joined by an underlay of veths on a
 * switch namespace, and each recipe adds its own parts:
 *
 * - **dhcp**: a VXLAN overlay joins the hosts' bridges and a services
 *   namespace (the gateway) into one L2 network. Kea (`kea-dhcp4`) serves
 *   its one address space from the services namespace, with its leases in
 *   a PostgreSQL instance of the test's own (a Unix socket in the temp
 *   dir). Each host runs CNI's `dhcp` daemon in its namespace with its own
 *   socket, named by its conflist's `ipam.daemonSocketPath`.
 * - **routed**: each host's conflist has its own host-local range and its
 *   bridge is the gateway of that range; each host routes the other hosts'
 *   ranges to them over the underlay. No cluster service.
 *
 * Everything lives in namespaces and a temp dir of the run's own and is
 * stopped (by pid) and removed by {@linkcode Cluster.stop}, also when a
 * test fails part-way. Private ranges only; nothing is routed out.
 *
 * @module
 */
import { join } from "node:path";
import { claimPath } from "../../src/provider/ownership.ts";
import { DEFAULT_NETNS_DIR } from "../../src/wiring/kernel.ts";
import { Journal } from "../../src/store/journal.ts";
import {
  ipJson,
  netnsNames,
  removeNetnsWithPrefix,
  run,
  type RunResult,
  sh,
  uniquePrefix,
} from "../support/harness.ts";
import {
  CLI_MAIN,
  CLI_PERMISSIONS,
  REPO_ROOT,
  SYSTEM_CNI_BIN,
} from "../support/cli.ts";

/** The database user of the test's PostgreSQL (Debian's `postgres`). */
export const PG_USER = "postgres";
/** Kea's lease database. */
export const KEA_DB = "kea";
/** The VMs' bridge on every host. */
export const HOST_BRIDGE = "vmbr0";
/** The VXLAN device on every node of the dhcp recipe. */
export const VXLAN_DEV = "vx0";
/** The VXLAN network identifier of the overlay. */
const VXLAN_ID = 4242;
/** The IANA VXLAN UDP port. */
const VXLAN_PORT = 4789;
/** Underlay MTU: room for VXLAN's 50 bytes over a 1500-byte overlay. */
const UNDERLAY_MTU = 1550;
/** Overlay (and VM) MTU. */
const OVERLAY_MTU = 1500;
/** The underlay: a switch namespace's bridge and a /24 of node addresses. */
const UNDERLAY_BRIDGE = "ul0";
const UNDERLAY_NET = "10.250.0";
/** The dhcp recipe's one L2 network and its gateway (the services node). */
export const OVERLAY_NET = "10.213.0";
/** The overlay's prefix length. */
export const OVERLAY_PREFIX = 24;
/** Kea's pool: the addresses VMs get. */
const POOL_FIRST = 100;
const POOL_LAST = 199;
/** The routed recipe's per-host ranges: `10.214.<host + 1>.0/24`. */
export const ROUTED_NET = "10.214";
/** The CNI network name of each recipe's conflist. */
export const NETWORK = { dhcp: "overlay", routed: "routed" } as const;
/** How long a process is given to exit after SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 5000;
/** How long Kea, PostgreSQL and the dhcp daemon may take to start. */
const START_TIMEOUT_MS = 30_000;

/** Kea's timers, in seconds (short in tests: renewals within seconds). */
export interface LeaseTimes {
  /** T1: the client renews after this. */
  renew: number;
  /** T2: the client rebinds after this. */
  rebind: number;
  /** The lease's lifetime. */
  valid: number;
}

/** One row of Kea's `lease4` table. */
export interface KeaLease {
  address: string;
  /** Hardware address, `aa:bb:…`. */
  mac: string;
  /** The client identifier without its type byte (the dhcp plugin's text). */
  clientId: string;
  /** Expiry, seconds since the epoch. */
  expire: number;
  /** 0 assigned, 1 declined, 2 expired-reclaimed. */
  state: number;
}

/** A process the cluster started, stopped by its pid. */
class Proc {
  readonly #status: Promise<Deno.CommandStatus>;
  #done = false;

  constructor(readonly name: string, readonly child: Deno.ChildProcess) {
    this.#status = child.status.then((s) => {
      this.#done = true;
      return s;
    });
  }

  get pid(): number {
    return this.child.pid;
  }

  get running(): boolean {
    return !this.#done;
  }

  /** SIGTERM (or `signal`), then SIGKILL after the grace time; waits. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<void> {
    if (this.#done) return;
    try {
      Deno.kill(this.pid, signal);
    } catch { /* exited meanwhile */ }
    const timer = setTimeout(() => {
      try {
        Deno.kill(this.pid, "SIGKILL");
      } catch { /* exited */ }
    }, STOP_GRACE_MS);
    try {
      await this.#status;
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * Spawns `cmd args` with its output appended to `log` (a shell `exec`s it,
 * so the pid is the command's own).
 */
function spawnLogged(
  name: string,
  argv: string[],
  log: string,
  opts: { env?: Record<string, string>; cwd?: string } = {},
): Proc {
  const quoted = argv.map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(" ");
  const child = new Deno.Command("sh", {
    args: ["-c", `exec ${quoted} >>'${log}' 2>&1`],
    env: opts.env,
    cwd: opts.cwd,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  return new Proc(name, child);
}

/** Polls `fn` until it returns true; throws `what` with `detail()` after `ms`. */
export async function waitUntil(
  what: string,
  fn: () => Promise<boolean> | boolean,
  ms: number,
  detail: () => Promise<string> | string = () => "",
): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await fn())) {
    if (performance.now() > deadline) {
      throw new Error(`${what}: not within ${ms} ms\n${await detail()}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function readText(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return "";
  }
}

/** `ip -n NS args…`, throwing with stderr on failure. */
async function ipn(ns: string, ...args: string[]): Promise<void> {
  await sh("ip", "-n", ns, ...args);
}

/** The PostgreSQL binaries of the newest installed major version. */
async function pgBinDir(): Promise<string> {
  const base = "/usr/lib/postgresql";
  const versions: number[] = [];
  try {
    for await (const e of Deno.readDir(base)) {
      if (/^\d+$/.test(e.name)) versions.push(Number(e.name));
    }
  } catch { /* none */ }
  if (!versions.length) {
    throw new Error(`no PostgreSQL under ${base} (apt-get install postgresql)`);
  }
  return join(base, String(Math.max(...versions)), "bin");
}

/** uid and gid of a user, by `id`. */
async function userIds(user: string): Promise<{ uid: number; gid: number }> {
  const uid = Number((await sh("id", "-u", user)).trim());
  const gid = Number((await sh("id", "-g", user)).trim());
  return { uid, gid };
}

/**
 * PostgreSQL of the test's own: a cluster in the temp dir, owned by Debian's
 * `postgres` user (it refuses root), listening only on a Unix socket in
 * that dir; the `kea` database with Kea's schema (`kea-admin db-init`).
 */
export class Postgres {
  private constructor(
    readonly dir: string,
    readonly proc: Proc,
    readonly log: string,
  ) {}

  /** The socket directory (libpq's `host` for a Unix socket). */
  get socketDir(): string {
    return this.dir;
  }

  /** Creates, starts and initialises it (stopped again when a step fails). */
  static async start(dir: string): Promise<Postgres> {
    const bin = await pgBinDir();
    const { uid, gid } = await userIds(PG_USER);
    await Deno.mkdir(dir, { mode: 0o700 });
    await Deno.chown(dir, uid, gid);
    const data = join(dir, "data");
    const log = join(dir, "postgres.log");
    const asPg = [
      "setpriv",
      `--reuid=${uid}`,
      `--regid=${gid}`,
      "--init-groups",
      "--",
    ];
    const env = { HOME: dir, LANG: "C", PATH: Deno.env.get("PATH") ?? "" };
    const init = await run(asPg[0], [
      ...asPg.slice(1),
      join(bin, "initdb"),
      "-D",
      data,
      "-U",
      PG_USER,
      "--auth=trust",
      "--encoding=UTF8",
      "--locale=C",
      "--no-sync",
    ], { cwd: dir, env, clearEnv: true });
    if (init.code !== 0) {
      throw new Error(`initdb: ${init.stderr}${init.stdout}`);
    }
    const proc = spawnLogged(
      "postgres",
      [
        ...asPg,
        join(bin, "postgres"),
        "-D",
        data,
        "-k",
        dir,
        "-c",
        "listen_addresses=",
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
      ],
      log,
      { cwd: dir, env },
    );
    const pg = new Postgres(dir, proc, log);
    try {
      await waitUntil(
        "PostgreSQL accepting connections",
        async () =>
          (await run("pg_isready", ["-q", "-h", dir, "-U", PG_USER])).code ===
            0,
        START_TIMEOUT_MS,
        () => readText(log),
      );
      await pg.#psql("postgres", `CREATE DATABASE ${KEA_DB}`);
      const kea = await run("kea-admin", [
        "db-init",
        "pgsql",
        "-h",
        dir,
        "-u",
        PG_USER,
        "-n",
        KEA_DB,
      ]);
      if (kea.code !== 0) {
        throw new Error(`kea-admin db-init: ${kea.stderr}${kea.stdout}`);
      }
      return pg;
    } catch (e) {
      await pg.stop();
      throw e;
    }
  }

  async #psql(db: string, sql: string): Promise<string> {
    const r = await run("psql", [
      "-h",
      this.dir,
      "-U",
      PG_USER,
      "-d",
      db,
      "-v",
      "ON_ERROR_STOP=1",
      "-At",
      "-F",
      "|",
      "-c",
      sql,
    ]);
    if (r.code !== 0) throw new Error(`psql ${sql}: ${r.stderr}`);
    return r.stdout;
  }

  /** Rows of a query on the Kea database, fields split on `|`. */
  async query(sql: string): Promise<string[][]> {
    const out = await this.#psql(KEA_DB, sql);
    return out.split("\n").filter((l) => l !== "").map((l) => l.split("|"));
  }

  /** Kea's IPv4 leases, by address. */
  async leases(): Promise<KeaLease[]> {
    const rows = await this.query(
      `SELECT host('0.0.0.0'::inet + address), encode(hwaddr, 'hex'), ` +
        `encode(substring(client_id FROM 2), 'escape'), ` +
        `extract(epoch FROM expire)::bigint, state FROM lease4 ` +
        `ORDER BY address`,
    );
    return rows.map(([address, hw, cid, expire, state]) => ({
      address,
      mac: (hw.match(/../g) ?? []).join(":"),
      clientId: cid,
      expire: Number(expire),
      state: Number(state),
    }));
  }

  /** Fast shutdown (SIGINT), then SIGKILL after the grace time. */
  async stop(): Promise<void> {
    await this.proc.stop("SIGINT");
  }
}

/** Kea DHCPv4 in a namespace, serving one subnet, leases in PostgreSQL. */
export class Kea {
  private constructor(readonly proc: Proc, readonly log: string) {}

  /** Writes its config, starts it and waits for `DHCP4_STARTED`. */
  static async start(opts: {
    dir: string;
    netns: string;
    iface: string;
    pg: Postgres;
    times: LeaseTimes;
  }): Promise<Kea> {
    await Deno.mkdir(opts.dir, { recursive: true });
    const log = join(opts.dir, "kea.log");
    const conf = join(opts.dir, "kea-dhcp4.json");
    await Deno.writeTextFile(
      conf,
      JSON.stringify(
        {
          Dhcp4: {
            "interfaces-config": { interfaces: [opts.iface] },
            "lease-database": {
              type: "postgresql",
              name: KEA_DB,
              host: opts.pg.socketDir,
              user: PG_USER,
            },
            "renew-timer": opts.times.renew,
            "rebind-timer": opts.times.rebind,
            "valid-lifetime": opts.times.valid,
            subnet4: [{
              id: 1,
              subnet: `${OVERLAY_NET}.0/${OVERLAY_PREFIX}`,
              pools: [{
                pool:
                  `${OVERLAY_NET}.${POOL_FIRST} - ${OVERLAY_NET}.${POOL_LAST}`,
              }],
              "option-data": [{ name: "routers", data: `${OVERLAY_NET}.1` }],
            }],
            loggers: [{
              name: "kea-dhcp4",
              output_options: [{ output: log }],
              severity: "INFO",
            }],
          },
        },
        null,
        2,
      ),
    );
    const proc = spawnLogged(
      "kea-dhcp4",
      [
        "nsenter",
        `--net=${DEFAULT_NETNS_DIR}/${opts.netns}`,
        "--",
        "kea-dhcp4",
        "-c",
        conf,
      ],
      join(opts.dir, "kea.out"),
      {
        env: {
          ...Deno.env.toObject(),
          KEA_LOCKFILE_DIR: opts.dir,
          KEA_PIDFILE_DIR: opts.dir,
        },
      },
    );
    const kea = new Kea(proc, log);
    try {
      await waitUntil(
        "Kea started",
        async () => {
          if (!proc.running) throw new Error("kea-dhcp4 exited");
          return (await readText(log)).includes("DHCP4_STARTED");
        },
        START_TIMEOUT_MS,
        async () =>
          `${await readText(log)}${await readText(
            join(opts.dir, "kea.out"),
          )}`,
      );
      return kea;
    } catch (e) {
      await kea.stop();
      throw new Error(
        `${(e as Error).message}\n${await readText(join(opts.dir, "kea.out"))}`,
      );
    }
  }

  async stop(): Promise<void> {
    await this.proc.stop();
  }
}

/** CNI's `dhcp` daemon in a host's namespace, on its own socket. */
export class DhcpDaemon {
  private constructor(
    readonly proc: Proc,
    readonly socket: string,
    readonly log: string,
  ) {}

  /** Starts it in `netns` (null: this process's) and waits for its socket. */
  static async start(
    netns: string | null,
    dir: string,
    binDir = SYSTEM_CNI_BIN,
  ): Promise<DhcpDaemon> {
    const socket = join(dir, "dhcp.sock");
    const log = join(dir, "dhcp-daemon.log");
    const proc = spawnLogged("dhcp daemon", [
      ...(netns === null
        ? []
        : ["nsenter", `--net=${DEFAULT_NETNS_DIR}/${netns}`, "--"]),
      join(binDir, "dhcp"),
      "daemon",
      "-socketpath",
      socket,
    ], log);
    const d = new DhcpDaemon(proc, socket, log);
    try {
      await waitUntil(
        `dhcp daemon socket ${socket}`,
        async () => {
          if (!proc.running) throw new Error("the dhcp daemon exited");
          try {
            return (await Deno.lstat(socket)).isSocket ?? true;
          } catch {
            return false;
          }
        },
        START_TIMEOUT_MS,
        () => readText(log),
      );
      return d;
    } catch (e) {
      await d.stop();
      throw e;
    }
  }

  /** Its log so far. */
  text(): Promise<string> {
    return readText(this.log);
  }

  /** How many times it logged `what` for a client id (e.g. "lease renewed"). */
  async count(clientId: string, what: string): Promise<number> {
    const line = `${clientId}: ${what}`;
    return (await this.text()).split("\n").filter((l) => l.includes(line))
      .length;
  }

  async stop(): Promise<void> {
    await this.proc.stop();
  }
}

/** A CLI run's outcome, with the signal that ended it. */
export interface CliRun extends RunResult {
  signal: Deno.Signal | null;
}

/** One "host": a namespace, its bridge and its own vmnic install. */
export class VmnicHost {
  readonly flags: string[];
  readonly rootDir: string;
  readonly runDir: string;
  readonly confDir: string;

  constructor(
    /** 0, 1, … */
    readonly index: number,
    /** Its namespace's name. */
    readonly netns: string,
    /** The netns prefix of its VMs. */
    readonly prefix: string,
    /** Its own dir (root, run, conflists, dhcp socket). */
    readonly dir: string,
    /** Its underlay address. */
    readonly underlayIp: string,
  ) {
    this.rootDir = join(dir, "root");
    this.runDir = join(dir, "run");
    this.confDir = join(dir, "net.d");
    this.flags = [
      `--root-dir=${this.rootDir}`,
      `--run-dir=${this.runDir}`,
      `--cni-conf-dir=${this.confDir}`,
      `--cni-bin-dir=${SYSTEM_CNI_BIN}`,
      `--netns-prefix=${prefix}`,
      `--hooks-dir=${join(dir, "hooks.d")}`,
      `--socket=${join(dir, "vmnic.sock")}`,
      `--policy-file=${join(dir, "policy.json")}`,
      "--no-daemon",
    ];
  }

  /** Its name in messages: `host a`. */
  get name(): string {
    return `host ${String.fromCharCode(97 + this.index)}`;
  }

  /** The netns path of one of its VMs. */
  netnsOf(vm: string): string {
    return `${DEFAULT_NETNS_DIR}/${this.prefix}${vm}`;
  }

  /**
   * Runs the CLI inside the host's namespace with the host's settings
   * (and `--json` unless `json: false`), without the caller's VMNIC_*.
   */
  async cli(
    args: string[],
    opts: { json?: boolean; env?: Record<string, string> } = {},
  ): Promise<CliRun> {
    const env = Object.fromEntries(
      Object.entries(Deno.env.toObject()).filter(([k]) =>
        !k.startsWith("VMNIC_")
      ),
    );
    const out = await new Deno.Command("nsenter", {
      args: [
        `--net=${DEFAULT_NETNS_DIR}/${this.netns}`,
        "--",
        Deno.execPath(),
        "run",
        ...CLI_PERMISSIONS,
        CLI_MAIN,
        ...this.flags,
        ...(opts.json === false ? [] : ["--json"]),
        ...args,
      ],
      cwd: REPO_ROOT,
      env: { ...env, ...(opts.env ?? {}) },
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    return {
      code: out.code,
      signal: out.signal,
      stdout: dec.decode(out.stdout),
      stderr: dec.decode(out.stderr),
    };
  }

  /** {@linkcode cli}, asserting exit 0, with stdout parsed. */
  async cliOk<T = unknown>(args: string[]): Promise<T> {
    const r = await this.cli(args);
    if (r.code !== 0) {
      throw new Error(
        `${this.name}: vmnic ${
          args.join(" ")
        } exited ${r.code}: ${r.stderr}${r.stdout}`,
      );
    }
    return JSON.parse(r.stdout) as T;
  }

  /** The install id (`records/install.json`), which container ids carry. */
  async installId(): Promise<string> {
    const v = JSON.parse(
      await Deno.readTextFile(join(this.rootDir, "records", "install.json")),
    ) as { installId: string };
    return v.installId;
  }

  /**
   * The client id the dhcp plugin gives a VM's NIC: its container id
   * (`vmnic-<install id>-<vm>`), network and interface.
   */
  async clientIdOf(vm: string, network: string, ifName = "eth0") {
    return dhcpClientId(
      `vmnic-${await this.installId()}-${vm}`,
      network,
      ifName,
    );
  }

  /** The addresses host-local holds a lease file for (routed recipe). */
  async hostLocalLeases(): Promise<string[]> {
    const out: string[] = [];
    try {
      for await (
        const e of Deno.readDir(join(this.dir, "ipam", NETWORK.routed))
      ) {
        if (/^[0-9.]+$/.test(e.name)) out.push(e.name);
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    return out.sort();
  }

  /** Its VMs' netns (names without the prefix). */
  async vmNetns(): Promise<string[]> {
    return (await netnsNames()).filter((n) => n.startsWith(this.prefix))
      .map((n) => n.slice(this.prefix.length)).sort();
  }

  /** Host veths on its bridge (not the bridge's own uplink). */
  async vethsOnBridge(): Promise<string[]> {
    return (await ipJson("-n", this.netns, "-d", "link")).filter((l) =>
      l.master === HOST_BRIDGE &&
      (l.linkinfo as { info_kind?: string } | undefined)?.info_kind === "veth"
    ).map((l) => String(l.ifname));
  }

  /**
   * What the install holds besides `keep`'s VMs: netns, host veths,
   * records, lock files, record backups. Empty means nothing is left.
   */
  async leftovers(keep: string[] = []): Promise<string[]> {
    const out: string[] = [];
    for (const vm of await this.vmNetns()) {
      if (!keep.includes(vm)) out.push(`netns ${this.prefix}${vm}`);
    }
    const veths = await this.vethsOnBridge();
    if (veths.length > keep.length) {
      out.push(`host veths on ${HOST_BRIDGE}: ${veths.join(", ")}`);
    }
    const vms = await this.cliOk<{ vmId: string }[]>(["vms"]);
    for (const v of vms) {
      if (!keep.includes(v.vmId)) out.push(`record of ${v.vmId}`);
    }
    try {
      for await (const e of Deno.readDir(join(this.runDir, "locks"))) {
        const vm = e.name.replace(/\.lock$/, "");
        if (!keep.includes(vm)) out.push(`lock file ${e.name}`);
      }
    } catch { /* no locks dir */ }
    for (const vm of new Journal(this.rootDir).vmIds()) {
      if (!keep.includes(vm)) out.push(`record backup of ${vm}`);
    }
    return out.map((l) => `${this.name}: ${l}`);
  }

  /** Deletes every VM it records (`--force`), for cleanup. */
  async deleteAll(): Promise<void> {
    const r = await this.cli(["vms"]);
    if (r.code !== 0) return;
    const vms = (JSON.parse(r.stdout) as { vmId: string }[]).map((v) => v.vmId);
    if (vms.length) await this.cli(["delete", "--force", ...vms]);
  }
}

/** What {@linkcode Cluster.start} builds. */
export interface ClusterOptions {
  /** A short tag for names (`mh`). */
  tag: string;
  /** Number of hosts (at least 1). */
  hosts: number;
  recipe: "dhcp" | "routed";
  /** Kea's timers (dhcp recipe); default 4 / 8 / 16 s. */
  times?: LeaseTimes;
}

/** Default timers: a renewal every 4 s. */
export const TEST_TIMES: LeaseTimes = { renew: 4, rebind: 8, valid: 16 };

/** The hosts, the underlay and the recipe's services. */
export class Cluster {
  readonly hosts: VmnicHost[] = [];
  readonly daemons: DhcpDaemon[] = [];
  pg?: Postgres;
  kea?: Kea;
  /** The services node (dhcp recipe): the gateway and Kea. */
  readonly svc: string;
  readonly underlay: string;

  private constructor(
    readonly prefix: string,
    readonly dir: string,
    readonly opts: ClusterOptions,
  ) {
    this.svc = `${prefix}svc`;
    this.underlay = `${prefix}ul`;
  }

  /** The overlay gateway (dhcp recipe), on the services node. */
  static readonly GATEWAY = `${OVERLAY_NET}.1`;

  /** Builds it; on failure, removes what it made and rethrows. */
  static async start(opts: ClusterOptions): Promise<Cluster> {
    const prefix = uniquePrefix(opts.tag);
    const dir = await Deno.makeTempDir({ prefix: "vmnic-mh-" });
    // PostgreSQL runs as its own user: it must reach its dir below.
    await Deno.chmod(dir, 0o711);
    const c = new Cluster(prefix, dir, opts);
    try {
      await c.#build();
      return c;
    } catch (e) {
      await c.stop();
      throw e;
    }
  }

  /** The namespace of host `i`. */
  hostNetns(i: number): string {
    return `${this.prefix}h${i}`;
  }

  async #build(): Promise<void> {
    const { opts } = this;
    const dhcp = opts.recipe === "dhcp";
    await sh("ip", "netns", "add", this.underlay);
    await ipn(this.underlay, "link", "set", "lo", "up");
    await ipn(this.underlay, "link", "add", UNDERLAY_BRIDGE, "type", "bridge");
    await ipn(this.underlay, "link", "set", UNDERLAY_BRIDGE, "up");
    const nodes: { netns: string; ip: string }[] = [];
    for (let i = 0; i < opts.hosts; i++) {
      nodes.push({ netns: this.hostNetns(i), ip: `${UNDERLAY_NET}.${i + 1}` });
    }
    if (dhcp) nodes.push({ netns: this.svc, ip: `${UNDERLAY_NET}.100` });
    for (const [i, n] of nodes.entries()) {
      await sh("ip", "netns", "add", n.netns);
      await ipn(n.netns, "link", "set", "lo", "up");
      const port = `p${i}`;
      await ipn(
        this.underlay,
        "link",
        "add",
        port,
        "mtu",
        String(UNDERLAY_MTU),
        "type",
        "veth",
        "peer",
        "name",
        "ul",
        "mtu",
        String(UNDERLAY_MTU),
        "netns",
        n.netns,
      );
      await ipn(this.underlay, "link", "set", port, "master", UNDERLAY_BRIDGE);
      await ipn(this.underlay, "link", "set", port, "up");
      await ipn(n.netns, "addr", "add", `${n.ip}/24`, "dev", "ul");
      await ipn(n.netns, "link", "set", "ul", "up");
    }
    for (const [i, n] of nodes.entries()) {
      if (dhcp) {
        await ipn(
          n.netns,
          "link",
          "add",
          VXLAN_DEV,
          "mtu",
          String(OVERLAY_MTU),
          "type",
          "vxlan",
          "id",
          String(VXLAN_ID),
          "local",
          n.ip,
          "dstport",
          String(VXLAN_PORT),
          "dev",
          "ul",
        );
        // Broadcast and unknown unicast go to every other node (head-end
        // replication); unicast MACs are learned.
        for (const peer of nodes) {
          if (peer === n) continue;
          await sh(
            "bridge",
            "-n",
            n.netns,
            "fdb",
            "append",
            "00:00:00:00:00:00",
            "dev",
            VXLAN_DEV,
            "dst",
            peer.ip,
          );
        }
      }
      if (n.netns === this.svc) {
        await ipn(
          n.netns,
          "addr",
          "add",
          `${Cluster.GATEWAY}/${OVERLAY_PREFIX}`,
          "dev",
          VXLAN_DEV,
        );
        await ipn(n.netns, "link", "set", VXLAN_DEV, "up");
        continue;
      }
      await ipn(n.netns, "link", "add", HOST_BRIDGE, "type", "bridge");
      if (dhcp) {
        await ipn(n.netns, "link", "set", VXLAN_DEV, "master", HOST_BRIDGE);
        await ipn(n.netns, "link", "set", VXLAN_DEV, "up");
      } else {
        // Routed: the others' ranges via their underlay addresses.
        for (const [j, peer] of nodes.entries()) {
          if (j === i) continue;
          await ipn(
            n.netns,
            "route",
            "add",
            routedSubnet(j),
            "via",
            peer.ip,
          );
        }
      }
      await ipn(n.netns, "link", "set", HOST_BRIDGE, "up");
      const host = new VmnicHost(
        i,
        n.netns,
        `${this.prefix}h${i}v-`,
        join(this.dir, `h${i}`),
        n.ip,
      );
      await Deno.mkdir(host.confDir, { recursive: true, mode: 0o700 });
      this.hosts.push(host);
    }
    if (dhcp) {
      this.pg = await Postgres.start(join(this.dir, "pg"));
      this.kea = await Kea.start({
        dir: join(this.dir, "kea"),
        netns: this.svc,
        iface: VXLAN_DEV,
        pg: this.pg,
        times: opts.times ?? TEST_TIMES,
      });
    }
    for (const host of this.hosts) {
      let ipam: Record<string, unknown>;
      let bridgeConf: Record<string, unknown>;
      if (dhcp) {
        const daemon = await DhcpDaemon.start(host.netns, host.dir);
        this.daemons.push(daemon);
        ipam = { type: "dhcp", daemonSocketPath: daemon.socket };
        bridgeConf = { isGateway: false, ipMasq: false };
      } else {
        const subnet = routedSubnet(host.index);
        ipam = {
          type: "host-local",
          ranges: [[{ subnet }]],
          // The other hosts' ranges, through this host's bridge.
          routes: Array.from({ length: opts.hosts }, (_, j) => j)
            .filter((j) => j !== host.index)
            .map((j) => ({ dst: routedSubnet(j) })),
          dataDir: join(host.dir, "ipam"),
        };
        // The bridge is the range's gateway; the host forwards (and
        // masquerades nothing).
        bridgeConf = { isGateway: true, ipMasq: false };
      }
      await Deno.writeTextFile(
        join(host.confDir, `10-${NETWORK[opts.recipe]}.conflist`),
        JSON.stringify(conflist(opts.recipe, bridgeConf, ipam), null, 2),
      );
    }
  }

  /** Kea's leases (dhcp recipe). */
  leases(): Promise<KeaLease[]> {
    if (!this.pg) throw new Error("no Kea in the routed recipe");
    return this.pg.leases();
  }

  /**
   * Stops and removes everything, best effort, in order: the dhcp daemons,
   * every host's VMs (`delete --force`), Kea, PostgreSQL, the namespaces,
   * the hosts' prefix claims, the temp dir.
   */
  async stop(): Promise<void> {
    // The daemons first: a lease they fail to renew holds a DEL for
    // minutes (the dhcp plugin before 1.6.0 cannot stop a retry), and
    // without them `delete --force` finishes at once.
    for (const d of this.daemons) await d.stop().catch(() => {});
    for (const host of this.hosts) {
      await host.deleteAll().catch(() => {});
    }
    await this.kea?.stop().catch(() => {});
    await this.pg?.stop().catch(() => {});
    await removeNetnsWithPrefix(this.prefix).catch(() => {});
    for (const host of this.hosts) {
      await Deno.remove(claimPath(DEFAULT_NETNS_DIR, host.prefix)).catch(
        () => {},
      );
    }
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** The routed recipe's range of host `i`. */
export function routedSubnet(i: number): string {
  return `${ROUTED_NET}.${i + 1}.0/24`;
}

/** A one-plugin conflist: the bridge, with the recipe's IPAM. */
function conflist(
  recipe: "dhcp" | "routed",
  bridge: Record<string, unknown>,
  ipam: Record<string, unknown>,
): Record<string, unknown> {
  return {
    cniVersion: "1.0.0",
    name: NETWORK[recipe],
    plugins: [{
      type: "bridge",
      bridge: HOST_BRIDGE,
      mtu: OVERLAY_MTU,
      ...bridge,
      ipam,
    }],
  };
}

/** `ping` from a namespace; true when an answer came. */
export async function pingFrom(
  netns: string,
  address: string,
  count = 3,
): Promise<boolean> {
  const r = await run("nsenter", [
    `--net=${DEFAULT_NETNS_DIR}/${netns}`,
    "--",
    "ping",
    "-c",
    String(count),
    "-W",
    "2",
    address,
  ]);
  return r.code === 0;
}

/** The dhcp plugin's client id of a NIC (containernetworking-plugins). */
export function dhcpClientId(
  containerId: string,
  network: string,
  ifName: string,
): string {
  return `${containerId}/${network}/${ifName}`;
}
