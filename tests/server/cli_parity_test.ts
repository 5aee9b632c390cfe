/**
 * The CLI through `vmnic serve` is the CLI in process (docs/cli.md, issue
 * #10 §2): for every command with an HTTP route, the same command line
 * prints the same stdout (JSON with `--json`, the human text without), the
 * same stderr, and exits with the same code, whether it goes through the
 * daemon (`--socket`) or runs in process (`--no-daemon`): on success and
 * for each error class (bad input 2, not found 3, conflict 2, busy 1).
 *
 * The CLI talks to the daemon through a proxy socket that notes every
 * request it forwards, so each run also proves which way it went: exactly
 * the expected request through the daemon, or none (checked before the
 * daemon is asked, or a form the routes do not carry). State-changing
 * commands are compared on the same VM in the same state: idempotent ones
 * twice in a row (a retried add returns the same NIC), the others after
 * the state is set up again before each run. Errors change nothing.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { rootTest, run, sh } from "../support/harness.ts";
import { CLI_MAIN, CLI_PERMISSIONS, REPO_ROOT } from "../support/cli.ts";
import {
  type CliResult,
  type Fixture,
  makeFixture,
} from "../provider/_fixture.ts";
import { writeScript } from "../hooks/hook_fixtures.ts";
import { COMMANDS } from "../../src/cli/table.ts";
import { DAEMON_COMMANDS } from "../../src/cli/forward.ts";
import type { NicConfig, VmInfo } from "../../src/provider/types.ts";
import {
  at,
  cleanEnv,
  type DaemonProcess,
  killDaemons,
  type Proxy,
  socketDir,
  startDaemon,
  startProxy,
} from "./_daemon.ts";
import { holdings } from "./_state.ts";
import { makeHooksDir } from "./_hooks.ts";

/** A process holding a VM's lock (prints `acquired`, then sleeps). */
const LOCK_HOLDER = fileURLToPath(
  new URL("../provider/_lock_holder.ts", import.meta.url),
);

/**
 * The ways a command line runs: handed whole to the daemon (`POST
 * /v1/cli`, the CLI's fast path), parsed here and sent by the command's own
 * route (what the CLI does when a global option with a separate value comes
 * first, or for a daemon without /v1/cli), and in process.
 */
type Way = "cli" | "route" | "process";

/** One command line, run every way. */
interface Case {
  args: string[];
  /**
   * The request the CLI must send the daemon (`METHOD /path?query`, or a
   * pattern of it); null: it runs in process.
   */
  route: string | RegExp | null;
  /** The exit code. */
  code: number;
  /** The error type on stderr (with `--json`). */
  error?: string;
  /** Which way runs first (state-changing, idempotent commands). */
  first?: "daemon" | "process";
  /** Sets the state up again before each run. */
  before?: () => Promise<unknown>;
  /** The run must change nothing on the host or in the records. */
  unchanged?: boolean;
}

/** The settings both ways run with: `--wait 0`, so busy is immediate. */
const WAIT = ["--wait=0"];
/** `vmnic serve` without the watcher's reactions (docs/watcher.md). */
const WATCHER_OFF = [
  "--watch-carrier=off",
  "--watch-netns=off",
  "--watch-host=off",
];

/**
 * One W3C trace context for every run: the same command line in the same
 * environment, whichever way it goes (a CLI that names its trace in its
 * output names this one both ways).
 */
const TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/** The CLI with the fixture's settings, then `args`, as its own process. */
function cli(fx: Fixture, args: string[]): Promise<CliResult> {
  return run(Deno.execPath(), [
    "run",
    ...CLI_PERMISSIONS,
    CLI_MAIN,
    ...fx.flags,
    ...args,
  ], {
    cwd: REPO_ROOT,
    env: cleanEnv({ TRACEPARENT }),
    clearEnv: true,
  });
}

class Parity {
  /** Commands a case sent through the daemon. */
  readonly viaDaemon = new Set<string>();
  /** Commands a case ran. */
  readonly ran = new Set<string>();

  constructor(readonly fx: Fixture, readonly proxy: Proxy) {}

  async #run(c: Case, way: Way, json: boolean): Promise<CliResult> {
    const what = `${way}: vmnic ${json ? "--json " : ""}${c.args.join(" ")}`;
    await c.before?.();
    const was = c.unchanged ? await holdings(this.fx) : undefined;
    const seen = this.proxy.requests().length;
    const socket = `--socket=${this.proxy.socket}`;
    const r = await cli(this.fx, [
      // `--wait 0` in two words first: the command is not the first word,
      // so the CLI parses the line itself and uses the command's route.
      ...(way === "route" ? ["--wait", "0", socket] : []),
      ...(json ? ["--json"] : []),
      ...(way === "cli" ? [...WAIT, socket] : []),
      ...(way === "process" ? [...WAIT, "--no-daemon"] : []),
      ...c.args,
    ]);
    const sent = this.proxy.requests().slice(seen);
    const name = c.args.find((a) => !a.startsWith("-"))!;
    // A line the daemon does not run (route null) comes back to run here,
    // having done nothing there.
    const want = way === "route" && c.route !== null
      ? [c.route]
      : way === "cli" && DAEMON_COMMANDS.has(name)
      ? ["POST /v1/cli"]
      : [];
    assert.ok(
      sent.length === want.length &&
        want.every((w, i) =>
          typeof w === "string" ? sent[i] === w : w.test(sent[i])
        ),
      `${what}: the daemon got ${
        JSON.stringify(sent)
      }, not ${want}\n${r.stderr}`,
    );
    if (was) {
      assert.deepEqual(await holdings(this.fx), was, `${what} changed things`);
    }
    return r;
  }

  /** Runs `c` every way, with and without `--json`, and compares. */
  async check(c: Case): Promise<void> {
    const name = c.args.find((a) => !a.startsWith("-"))!;
    this.ran.add(name);
    if (c.route !== null) this.viaDaemon.add(name);
    let errorMessage = "";
    for (const json of [true, false]) {
      const order: Way[] = c.first === "process"
        ? ["process", "cli", "route"]
        : ["cli", "route", "process"];
      const out: Partial<Record<Way, CliResult>> = {};
      for (const way of order) out[way] = await this.#run(c, way, json);
      const { process } = out as Record<Way, CliResult>;
      const what = `vmnic ${json ? "--json " : ""}${c.args.join(" ")}`;
      assert.equal(
        process.code,
        c.code,
        `${what} in process: exit ${process.code}\n${process.stderr}${process.stdout}`,
      );
      for (const way of ["cli", "route"] as const) {
        const daemon = out[way]!;
        assert.equal(
          daemon.code,
          process.code,
          `${what}: exit codes\n--- ${way}:\n${daemon.stderr}\n` +
            `--- in process:\n${process.stderr}`,
        );
        assert.equal(daemon.stdout, process.stdout, `${what} (${way}): stdout`);
        assert.equal(daemon.stderr, process.stderr, `${what} (${way}): stderr`);
      }
      if (json && c.code === 0) JSON.parse(process.stdout);
      if (json && c.error) {
        assert.equal(
          JSON.parse(process.stderr).error.type,
          c.error,
          `${what}: ${process.stderr}`,
        );
      }
      if (json && c.error) {
        errorMessage = JSON.parse(process.stderr).error.message;
      }
      if (!json && c.error) {
        assert.ok(
          process.stderr.startsWith("vmnic ") &&
            process.stderr.includes(errorMessage),
          `${what}: ${process.stderr}`,
        );
      }
    }
  }
}

rootTest(
  "cli through the daemon: same stdout, stderr and exit code as in process, for every command with a route, on success and for every error class",
  async (t) => {
    const fx = await makeFixture("par", { octet: 161 });
    const dir = await socketDir();
    let daemon: DaemonProcess | undefined;
    let proxy: Proxy | undefined;
    let holder: Deno.ChildProcess | undefined;
    try {
      // An executable hook, so `hooks` lists one and adds run it both ways.
      await makeHooksDir(fx);
      await writeScript(fx.hooksDir, "40-noop", "# vmnic-events: afterAdd");
      const socket = at(dir, "vmnic.sock");
      // The watcher off: its reactions (a quiesce, a report taking a VM's
      // lock for a moment) would race the commands compared here, run with
      // --wait 0; what it does has tests of its own (tests/watcher).
      daemon = await startDaemon(fx, {
        socket,
        args: [...WAIT, ...WATCHER_OFF],
      });
      proxy = await startProxy(at(dir, "proxy.sock"), socket);
      const p = new Parity(fx, proxy);
      const lib = async <T>(
        fn: (p: Awaited<ReturnType<Fixture["provider"]>>) => Promise<T>,
      ) => {
        const pr = await fx.provider();
        try {
          return await fn(pr);
        } finally {
          pr.close();
        }
      };
      const ns = (vm: string) => fx.prefix + vm;

      await t.step("state changes, compared on the same VM", async () => {
        await p.check({
          args: ["add", "vmA", "--nics", "2"],
          route: "POST /v1/vms/vmA/nics",
          code: 0,
          first: "process",
        });
        await p.check({
          args: ["add", "vmB", "--cpu", "2"],
          route: "POST /v1/vms/vmB/nics",
          code: 0,
          first: "daemon",
        });
        await p.check({
          args: ["add", "vmA", "--index", "1"],
          route: "POST /v1/vms/vmA/nics",
          code: 0,
        });
        await p.check({
          args: ["prepare", "vmP"],
          route: "POST /v1/vms/vmP",
          code: 0,
          first: "daemon",
        });
        await p.check({
          args: ["prepare", "vmA"],
          route: "POST /v1/vms/vmA",
          code: 0,
        });
        await p.check({
          args: ["quiesce", "vmA"],
          route: "POST /v1/vms/vmA/quiesce",
          code: 0,
        });
        await p.check({
          args: ["verify", "vmA"],
          route: "POST /v1/vms/vmA/verify",
          code: 0,
        });
        await p.check({
          args: ["unquiesce", "vmA"],
          route: "POST /v1/vms/vmA/unquiesce",
          code: 0,
        });
        await p.check({
          args: ["recover", "vmA"],
          route: "POST /v1/vms/vmA/recover",
          code: 0,
        });
        // A TAP deleted by hand: recover re-makes it, the same way each time.
        await p.check({
          args: ["recover", "vmA"],
          route: "POST /v1/vms/vmA/recover",
          code: 0,
          before: () => sh("ip", "-n", ns("vmA"), "link", "del", "tap0"),
        });
        // The policy as it is, applied again: nothing changes either way.
        await p.check({
          args: ["policy", "vmA", "0"],
          route: "POST /v1/vms/vmA/nics/0/policy",
          code: 0,
        });
        const ensureNic1 = async () => {
          await lib((pr) => pr.add("vmA", {}, { index: 1 }));
        };
        await p.check({
          args: ["remove", "vmA", "1"],
          route: "DELETE /v1/vms/vmA/nics/1",
          code: 0,
          before: ensureNic1,
        });
        await p.check({
          args: ["remove", "vmA", "7"],
          route: "DELETE /v1/vms/vmA/nics/7",
          code: 0,
          unchanged: true,
        });
        // Several indices: no route carries them; the CLI runs in process.
        await p.check({
          args: ["remove", "vmA", "1", "7"],
          route: null,
          code: 0,
          before: ensureNic1,
        });
        await p.check({
          args: ["remove", "vmA", "1", "--force"],
          route: "DELETE /v1/vms/vmA/nics/1?force=true",
          code: 0,
          before: ensureNic1,
        });
        await ensureNic1();
        // Every field of add's body: one NIC with its MAC and IP, queues
        // and queue size; several NICs.
        const [base] = fx.subnet.split("/");
        const ip = base.replace(/\.0$/, ".77");
        await p.check({
          args: [
            "add",
            "vmI",
            "--index",
            "0",
            "--mac",
            "02:00:00:aa:bb:cc",
            "--ip",
            `${ip}/24`,
            "--queues",
            "2",
            "--queue-size",
            "512",
          ],
          route: "POST /v1/vms/vmI/nics",
          code: 0,
          first: "daemon",
        });
        await p.check({
          args: ["add", "vmI", "--nics", "2", "--network", fx.network],
          route: "POST /v1/vms/vmI/nics",
          code: 0,
          first: "process",
        });
        await p.check({
          args: ["delete", "vmI", "--force"],
          route: "DELETE /v1/vms/vmI?force=true",
          code: 0,
          before: async () => {
            await lib((pr) => pr.add("vmI", {}, { index: 0 }));
          },
        });
        // A netns made by hand, taken over on purpose.
        await p.check({
          args: ["prepare", "vmF", "--adopt"],
          route: "POST /v1/vms/vmF",
          code: 0,
          first: "daemon",
          before: async () => {
            if (!(await fx.netns()).includes("vmF")) {
              await sh("ip", "netns", "add", ns("vmF"));
            }
          },
        });
        await lib((pr) => pr.delete(["vmF"]));
        await p.check({
          args: ["delete", "vmD"],
          route: "DELETE /v1/vms/vmD",
          code: 0,
          before: async () => {
            await lib((pr) => pr.add("vmD", {}));
          },
        });
        await p.check({
          args: ["delete", "ghost"],
          route: "DELETE /v1/vms/ghost",
          code: 0,
          unchanged: true,
        });
        await p.check({
          args: ["delete", "vmD", "vmE"],
          route: null,
          code: 0,
          before: async () => {
            await lib((pr) => pr.add("vmD", {}));
            await lib((pr) => pr.prepare("vmE"));
          },
        });
        const keep = ["--active", "vmA,vmB,vmP"];
        const prepareG = async () => {
          await lib((pr) => pr.prepare("vmG"));
        };
        await p.check({
          args: ["gc", ...keep, "--dry-run"],
          route: "POST /v1/gc",
          code: 0,
          before: prepareG,
          unchanged: true,
        });
        await p.check({
          args: ["gc", ...keep],
          route: "POST /v1/gc",
          code: 0,
          before: prepareG,
        });
        await p.check({
          args: ["gc", ...keep],
          route: "POST /v1/gc",
          code: 0,
          unchanged: true,
        });
        await p.check({
          args: ["gc", ...keep, "--include-pool"],
          route: "POST /v1/gc",
          code: 0,
          unchanged: true,
        });
        // --include-unknown opens the records afresh: in process.
        await p.check({
          args: ["gc", ...keep, "--include-unknown"],
          route: null,
          code: 0,
          unchanged: true,
        });
      });

      await t.step("reads", async () => {
        const [nic] = await lib((pr) => pr.list({ vmId: "vmA" }));
        const reads: Case[] = [
          { args: ["list", "--vm", "vmA"], route: "GET /v1/vms/vmA/nics" },
          { args: ["list"], route: null },
          { args: ["list", "--pool"], route: null },
          { args: ["inspect", nic.id], route: `GET /v1/nics/${nic.id}` },
          {
            args: ["find", "--ip", nic.ips[0].address],
            route: `GET /v1/nics?ip=${nic.ips[0].address}`,
          },
          { args: ["vms"], route: "GET /v1/vms" },
          { args: ["networks"], route: "GET /v1/networks" },
          { args: ["hooks"], route: "GET /v1/hooks" },
          ...["cmdline", "netplan", "networkd", "cloud-init"].map((f) => ({
            args: ["guest-config", "vmA", "--format", f],
            route: `GET /v1/vms/vmA/guest-config?format=${f}`,
          })),
          ...["qemu", "cloud-hypervisor", "firecracker"].map((h) => ({
            args: ["hv-args", "vmA", "--for", h],
            route: `GET /v1/vms/vmA/hv-args?for=${h}`,
          })),
          {
            args: ["hv-args", "vmA", "--for", "qemu", "--vhost"],
            route: "GET /v1/vms/vmA/hv-args?for=qemu&vhost=true",
          },
          { args: ["verify", "vmB"], route: "POST /v1/vms/vmB/verify" },
          {
            args: ["verify", "vmB", "--skip-check"],
            route: "POST /v1/vms/vmB/verify",
          },
          {
            args: ["events", "--vm", "vmA"],
            route: "GET /v1/events?vm=vmA&limit=100",
          },
          {
            args: ["events", "--op", "add", "--limit", "3"],
            route: "GET /v1/events?op=add&limit=3",
          },
          {
            args: ["events", "--failed", "--since", "1h"],
            route:
              /^GET \/v1\/events\?since=[0-9-]+T[0-9%A:.]+Z&failed=true&limit=100$/,
          },
          // `version` opens no provider: never worth a round trip.
          { args: ["version"], route: null },
        ].map((c) => ({ ...c, code: 0, unchanged: true }));
        for (const c of reads) await p.check(c);
      });

      await t.step("bad input: exit 2, nothing changed", async () => {
        const bad = (args: string[], route: string | null, error: string) =>
          p.check({ args, route, code: 2, error, unchanged: true });
        // Refused by the daemon (the provider's checks)...
        await bad(
          ["add", "vmN", "--network", "nosuch"],
          "POST /v1/vms/vmN/nics",
          "InvalidInputError",
        );
        // (Firecracker's virtio-net is single-queue; vmB has two.)
        await bad(
          ["hv-args", "vmB", "--for", "firecracker"],
          "GET /v1/vms/vmB/hv-args?for=firecracker",
          "InvalidInputError",
        );
        // ... or by the CLI before it asks anyone.
        await bad(["add", "vmN", "--nics", "0"], null, "UsageError");
        await bad(["add", "vmN", "--mac", "zz"], null, "UsageError");
        await bad(
          ["guest-config", "vmA", "--format", "bogus"],
          null,
          "UsageError",
        );
        await bad(["hv-args", "vmA", "--for", "bogus"], null, "UsageError");
        await bad(["remove", "vmA", "x"], null, "UsageError");
        await bad(["delete", "a..b"], null, "InvalidInputError");
        await bad(["gc"], null, "UsageError");
        await bad(["events", "--op", "bogus"], null, "UsageError");
        await bad(
          ["events", "--since", "yesterday"],
          null,
          "InvalidInputError",
        );
      });

      await t.step("not found: exit 3, nothing changed", async () => {
        const missing = (args: string[], route: string | null) =>
          p.check({
            args,
            route,
            code: 3,
            error: "NotFoundError",
            unchanged: true,
          });
        await missing(
          ["inspect", "0123456789abcdef"],
          "GET /v1/nics/0123456789abcdef",
        );
        // Ids no URL path segment can carry: asked in process.
        await missing(["inspect", ".."], null);
        await missing(["inspect", "."], null);
        await missing(["inspect", ""], null);
        await missing(["verify", "ghost"], "POST /v1/vms/ghost/verify");
        await missing(["recover", "ghost"], "POST /v1/vms/ghost/recover");
        await missing(["quiesce", "ghost"], "POST /v1/vms/ghost/quiesce");
        await missing(["unquiesce", "ghost"], "POST /v1/vms/ghost/unquiesce");
        await missing(["remove", "ghost", "0"], "DELETE /v1/vms/ghost/nics/0");
        await missing(
          ["guest-config", "ghost", "--format", "cmdline"],
          "GET /v1/vms/ghost/guest-config?format=cmdline",
        );
        await missing(
          ["hv-args", "ghost", "--for", "qemu"],
          "GET /v1/vms/ghost/hv-args?for=qemu",
        );
        // A VM without NICs lists none (not an error).
        await p.check({
          args: ["list", "--vm", "ghost"],
          route: "GET /v1/vms/ghost/nics",
          code: 0,
          unchanged: true,
        });
      });

      await t.step("conflicts: exit 2, nothing changed", async () => {
        const [nic0] = await lib((pr) => pr.list({ vmId: "vmA" }));
        const conflict = (args: string[], route: string) =>
          p.check({
            args,
            route,
            code: 2,
            error: "ConflictError",
            unchanged: true,
          });
        await conflict(
          ["add", "vmA", "--index", "0", "--queues", "4"],
          "POST /v1/vms/vmA/nics",
        );
        await conflict(
          ["add", "vmC", "--index", "0", "--mac", nic0.mac!],
          "POST /v1/vms/vmC/nics",
        );
        // A netns of that name this install did not make.
        await sh("ip", "netns", "add", ns("vmF"));
        try {
          await conflict(["prepare", "vmF"], "POST /v1/vms/vmF");
        } finally {
          await sh("ip", "netns", "del", ns("vmF"));
        }
      });

      await t.step("busy: exit 1, nothing changed", async () => {
        holder = new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "--allow-read",
            `--allow-write=${fx.runDir}`,
            "--allow-ffi",
            "--allow-sys=uid",
            LOCK_HOLDER,
            fx.runDir,
            "vmA",
          ],
          stdout: "piped",
          stderr: "inherit",
        }).spawn();
        const lines = holder.stdout.pipeThrough(new TextDecoderStream())
          .getReader();
        const { value: first } = await lines.read();
        lines.releaseLock();
        assert.equal(first?.trim(), "acquired", "the holder took vmA's lock");
        const busy = (args: string[], route: string) =>
          p.check({
            args,
            route,
            code: 1,
            error: "VmBusyError",
            unchanged: true,
          });
        await busy(["add", "vmA", "--index", "2"], "POST /v1/vms/vmA/nics");
        await busy(["verify", "vmA"], "POST /v1/vms/vmA/verify");
        await busy(["remove", "vmA", "1"], "DELETE /v1/vms/vmA/nics/1");
        await busy(["quiesce", "vmA"], "POST /v1/vms/vmA/quiesce");
        await busy(["unquiesce", "vmA"], "POST /v1/vms/vmA/unquiesce");
        await busy(["recover", "vmA"], "POST /v1/vms/vmA/recover");
        await busy(["prepare", "vmA"], "POST /v1/vms/vmA");
        // delete and gc report a busy VM in their result.
        await p.check({
          args: ["delete", "vmA"],
          route: "DELETE /v1/vms/vmA",
          code: 1,
          unchanged: true,
        });
        await p.check({
          args: ["gc", "--active", "vmB,vmP"],
          route: "POST /v1/gc",
          code: 0,
          unchanged: true,
        });
        holder.kill("SIGTERM");
        await holder.status;
        holder = undefined;
      });

      await t.step(
        "VMNIC_SOCKET names the socket as --socket does",
        async () => {
          const seen = proxy!.requests().length;
          const env = cleanEnv({ VMNIC_SOCKET: proxy!.socket, TRACEPARENT });
          const r = await run(Deno.execPath(), [
            "run",
            ...CLI_PERMISSIONS,
            CLI_MAIN,
            ...fx.flags,
            "--json",
            "vms",
          ], { env, clearEnv: true, cwd: REPO_ROOT });
          assert.equal(r.code, 0, r.stderr);
          assert.deepEqual(proxy!.requests().slice(seen), ["POST /v1/cli"]);
          const here = await cli(fx, ["--json", "--no-daemon", "vms"]);
          assert.deepEqual(r, here);
        },
      );

      await t.step("every command with a route was compared", async () => {
        for (const [name, entry] of Object.entries(COMMANDS)) {
          const cmd = (await entry.load()).default;
          if (!cmd.http) continue;
          assert.ok(p.ran.has(name), `${name} was not compared`);
          if (cmd.provider !== "none") {
            assert.ok(
              p.viaDaemon.has(name),
              `${name} never went to the daemon`,
            );
          }
        }
      });

      await t.step(
        "without the daemon the same command runs in process, with the same answer",
        async () => {
          const argv = ["vms"];
          const through = await cli(fx, [
            "--json",
            ...WAIT,
            `--socket=${socket}`,
            ...argv,
          ]);
          assert.equal(through.code, 0, through.stderr);
          await proxy!.close();
          proxy = undefined;
          const exit = await daemon!.stop();
          assert.deepEqual(exit, { code: 0, signal: null }, daemon!.log());
          const after = await cli(fx, [
            "--json",
            ...WAIT,
            `--socket=${socket}`,
            ...argv,
          ]);
          assert.deepEqual(after, through);
          const vms = JSON.parse(after.stdout) as VmInfo[];
          assert.deepEqual(vms.map((v) => v.vmId), ["vmA", "vmB", "vmP"]);
          const nics = JSON.parse(
            (await fx.cli(["list", "--vm", "vmA", `--socket=${socket}`]))
              .stdout,
          ) as NicConfig[];
          assert.deepEqual(nics.map((n) => n.index), [0, 1]);
        },
      );
    } finally {
      if (holder) {
        holder.kill("SIGKILL");
        await holder.status;
      }
      await proxy?.close();
      await killDaemons();
      await fx.cleanup();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
