/**
 * The CLI contract of provider v2 (docs/cli.md, docs/state-machine.md),
 * each command its own process: `add` is idempotent (also when two
 * processes race) and a contradicting add is a conflict that changes
 * nothing; `list`/`inspect`/`vms` show states; `remove` reports absent
 * indices; a bad netns prefix is refused before anything exists; `--wait`
 * and `--plugin-timeout` bound the waits; every `--help` works; errors have
 * one JSON shape.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import {
  netnsNames,
  rootTest,
  run,
  type RunResult,
} from "../support/harness.ts";
import { CLI_MAIN, CLI_PERMISSIONS, REPO_ROOT } from "../support/cli.ts";
import { type Fixture, makeFixture, runCli } from "../provider/_fixture.ts";
import { GLOBAL_OPTIONS } from "../../src/cli/args.ts";
import { COMMANDS } from "../../src/cli/table.ts";
import { claimPath } from "../../src/provider/ownership.ts";
import type { NicConfig, VmInfo } from "../../src/provider/types.ts";
import { isAlive } from "../hooks/hook_fixtures.ts";

/** A process holding a VM's lock (prints `acquired`, then sleeps). */
const LOCK_HOLDER = fileURLToPath(
  new URL("../provider/_lock_holder.ts", import.meta.url),
);

/** The JSON error on stderr (docs/cli.md, "JSON"). */
interface JsonError {
  type: string;
  message: string;
  op?: string;
  object?: string;
  reason?: string;
}

/** Asserts `r` exited `code` with a JSON error on stderr; returns it. */
function jsonError(r: RunResult, code: number, what: string): JsonError {
  assert.equal(r.code, code, `${what}: exit ${r.code}\n${r.stderr}`);
  let parsed: { error?: JsonError };
  try {
    parsed = JSON.parse(r.stderr);
  } catch {
    assert.fail(`${what}: stderr is not JSON: ${r.stderr}`);
  }
  assert.ok(parsed.error, `${what}: ${r.stderr}`);
  assert.equal(r.stdout, "", `${what}: nothing on stdout`);
  return parsed.error;
}

/**
 * Asserts a provider error has exactly the documented keys and that its
 * message is `op object: reason`, built once.
 */
function assertErrorShape(e: JsonError, type: string, op: string): void {
  // traceId: the run's trace, when the command opens a provider.
  assert.deepEqual(Object.keys(e).filter((k) => k !== "traceId").sort(), [
    "message",
    "object",
    "op",
    "reason",
    "type",
  ]);
  assert.equal(e.type, type);
  assert.equal(e.op, op);
  assert.equal(e.message, `${e.op} ${e.object}: ${e.reason}`);
}

/** Runs the CLI with the fixture's flags, `--json` and extra environment. */
function cliWithEnv(
  fx: Fixture,
  env: Record<string, string>,
  args: string[],
): Promise<RunResult> {
  const base = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) =>
      !k.startsWith("VMNIC_")
    ),
  );
  return run(Deno.execPath(), [
    "run",
    ...CLI_PERMISSIONS,
    CLI_MAIN,
    ...fx.flags,
    "--json",
    ...args,
  ], { cwd: REPO_ROOT, env: { ...base, ...env }, clearEnv: true });
}

/** Writes a second conflist (its own bridge and subnet) into the fixture. */
async function addNetwork(fx: Fixture, name: string, bridge: string) {
  await Deno.writeTextFile(
    join(fx.cniConfDir, `20-${name}.conflist`),
    JSON.stringify({
      cniVersion: "1.0.0",
      name,
      plugins: [{
        type: "bridge",
        bridge,
        isGateway: true,
        ipam: {
          type: "host-local",
          ranges: [[{ subnet: "10.226.99.0/24" }]],
          dataDir: fx.ipamDir,
        },
      }],
    }),
  );
}

rootTest(
  "cli: add is idempotent, also from two racing processes; --nics 2 keeps NIC 0; a contradicting add is a conflict",
  async () => {
    const fx = await makeFixture("ai", { octet: 221 });
    const otherBridge = `vbo${Deno.pid.toString(36)}`.slice(0, 15);
    try {
      await addNetwork(fx, "other", otherBridge);

      // Twice in a row: the same NIC 0, unchanged.
      const first = await fx.cliOk<NicConfig[]>(["add", "vm1"]);
      assert.equal(first.length, 1);
      assert.equal(first[0].index, 0);
      assert.equal(first[0].state, "active");
      const second = await fx.cliOk<NicConfig[]>(["add", "vm1"]);
      assert.deepEqual(second, first, "the retried add returns NIC 0 as is");
      assert.deepEqual(await fx.cliOk(["list", "--vm", "vm1"]), first);
      assert.deepEqual(await fx.leasedIps(), [first[0].ips[0].address]);

      // Two processes at once: one NIC, both answers name it.
      const raced = await Promise.all([
        fx.cli(["add", "vm2"]),
        fx.cli(["add", "vm2"]),
      ]);
      for (const r of raced) assert.equal(r.code, 0, r.stderr);
      const [a, b] = raced.map((r) => JSON.parse(r.stdout) as NicConfig[]);
      assert.equal(a.length, 1);
      assert.deepEqual(b, a, "both processes return the one NIC 0");
      const vm2 = await fx.cliOk<NicConfig[]>(["list", "--vm", "vm2"]);
      assert.deepEqual(vm2, a, "exactly one NIC recorded");
      assert.deepEqual(
        await fx.leasedIps(),
        [first[0].ips[0].address, a[0].ips[0].address].sort(),
        "one lease for vm2",
      );
      assert.deepEqual(await fx.netns(), ["vm1", "vm2"]);

      // --nics 2: NIC 0 as it was, NIC 1 new.
      const two = await fx.cliOk<NicConfig[]>(["add", "vm1", "--nics", "2"]);
      assert.deepEqual(two.map((n) => n.index), [0, 1]);
      assert.deepEqual(two[0], first[0], "NIC 0 unchanged, same id");
      assert.notEqual(two[1].id, first[0].id);
      assert.equal(two[1].network, fx.network, "joins the VM's network");
      assert.equal(two[1].state, "active");

      // NIC 0 exists on another network: a conflict, nothing changes.
      const leases = await fx.leasedIps();
      const conflict = await fx.cli([
        "add",
        "vm1",
        "--index",
        "0",
        "--network",
        "other",
      ]);
      const e = jsonError(conflict, 2, "add --index 0 --network other");
      assertErrorShape(e, "ConflictError", "add");
      assert.equal(e.object, "vm1/0");
      assert.match(e.reason!, /NIC 0 exists with network/);
      assert.ok(e.reason!.includes(fx.network), e.reason);
      assert.deepEqual(await fx.cliOk(["list", "--vm", "vm1"]), two);
      assert.deepEqual(await fx.leasedIps(), leases);
      assert.deepEqual(await fx.leasedIps("other"), [], "no lease on other");
      assert.deepEqual(await fx.netns(), ["vm1", "vm2"]);
      const v = await fx.cli(["verify", "vm1"]);
      assert.equal(v.code, 0, v.stdout + v.stderr);
    } finally {
      await fx.cleanup();
      await run("ip", ["link", "del", otherBridge]);
    }
  },
);

rootTest(
  "cli: list and inspect carry the NIC state, vms lists a prepared VM without NICs",
  async () => {
    const fx = await makeFixture("st", { octet: 222 });
    try {
      // A prepared VM: in `vms`, without NICs, absent from `list`.
      const { netnsPath } = await fx.cliOk<{ netnsPath: string }>([
        "prepare",
        "vm0",
      ]);
      let vms = await fx.cliOk<VmInfo[]>(["vms"]);
      assert.deepEqual(vms.map((v) => v.vmId), ["vm0"]);
      assert.equal(vms[0].netnsPath, netnsPath);
      assert.equal(vms[0].netns, true);
      assert.equal(vms[0].quiesced, false);
      assert.deepEqual(vms[0].nics, []);
      assert.ok(!Number.isNaN(Date.parse(vms[0].createdAt)));
      assert.deepEqual(await fx.cliOk(["list"]), []);

      // An active NIC, then quiesced: list, inspect and vms agree.
      const [nic] = await fx.cliOk<NicConfig[]>(["add", "vm1"]);
      assert.equal(nic.state, "active");
      assert.deepEqual(await fx.cliOk(["inspect", nic.id]), nic);
      assert.deepEqual(await fx.cliOk(["list", "--vm", "vm1"]), [nic]);
      await fx.cliOk(["quiesce", "vm1"]);
      const quiesced = await fx.cliOk<NicConfig>(["inspect", nic.id]);
      assert.deepEqual(quiesced, { ...nic, state: "quiesced" });
      assert.deepEqual(await fx.cliOk(["list", "--vm", "vm1"]), [quiesced]);
      vms = await fx.cliOk<VmInfo[]>(["vms"]);
      assert.deepEqual(vms.map((v) => v.vmId), ["vm0", "vm1"]);
      assert.equal(vms[1].quiesced, true);
      assert.equal(vms[1].network, fx.network);
      assert.deepEqual(vms[1].nics, [{ index: 0, state: "quiesced" }]);
      await fx.cliOk(["unquiesce", "vm1"]);
      assert.equal(
        (await fx.cliOk<NicConfig>(["inspect", nic.id])).state,
        "active",
      );

      // A crash between CNI ADD and plumbing leaves NIC 0 of vm2 `adding`:
      // listed with its state and IPs, without MAC and MTU (not plumbed).
      const crashed = await cliWithEnv(
        fx,
        { VMNIC_FAULT_POINT: "add:cni-added" },
        ["add", "vm2"],
      );
      assert.notEqual(crashed.code, 0, "the add was killed");
      const [adding] = await fx.cliOk<NicConfig[]>(["list", "--vm", "vm2"]);
      assert.equal(adding.state, "adding");
      assert.ok(!("mac" in adding), `no mac before plumbing: ${adding.mac}`);
      assert.ok(!("mtu" in adding), `no mtu before plumbing: ${adding.mtu}`);
      assert.equal(adding.ips.length, 1, "the IP of the CNI result is kept");
      assert.deepEqual(await fx.cliOk(["inspect", adding.id]), adding);
      vms = await fx.cliOk<VmInfo[]>(["vms"]);
      assert.deepEqual(vms.find((v) => v.vmId === "vm2")?.nics, [
        { index: 0, state: "adding" },
      ]);
      // The next add finishes the crashed one first, then makes NIC 0.
      const [redone] = await fx.cliOk<NicConfig[]>(["add", "vm2"]);
      assert.equal(redone.state, "active");
      assert.match(redone.mac ?? "", /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
      assert.deepEqual(await fx.cliOk(["list", "--vm", "vm2"]), [redone]);
      assert.deepEqual(
        await fx.leasedIps(),
        [nic.ips[0].address, redone.ips[0].address].sort(),
        "the crashed add's lease was released",
      );
    } finally {
      await fx.cleanup();
    }
  },
);

rootTest(
  "cli: remove reports indices without a NIC as absent; an unknown VM exits 3",
  async () => {
    const fx = await makeFixture("rm", { octet: 223 });
    try {
      const nics = await fx.cliOk<NicConfig[]>(["add", "vm1", "--nics", "2"]);
      assert.deepEqual(await fx.cliOk(["remove", "vm1", "5"]), {
        vmId: "vm1",
        removed: [],
        absent: [5],
        warnings: [],
      });
      assert.deepEqual(await fx.cliOk(["list", "--vm", "vm1"]), nics);
      const human = await fx.cli(["remove", "vm1", "5"], { json: false });
      assert.equal(human.code, 0, human.stderr);
      assert.match(human.stdout, /no NIC 5/);

      assert.deepEqual(await fx.cliOk(["remove", "vm1", "1", "5"]), {
        vmId: "vm1",
        removed: [1],
        absent: [5],
        warnings: [],
      });
      assert.deepEqual(await fx.cliOk(["list", "--vm", "vm1"]), [nics[0]]);
      assert.deepEqual(await fx.leasedIps(), [nics[0].ips[0].address]);

      const unknown = await fx.cli(["remove", "nope", "0"]);
      const e = jsonError(unknown, 3, "remove nope 0");
      assertErrorShape(e, "NotFoundError", "remove");
      assert.equal(e.object, "nope");
      assert.deepEqual(await fx.netns(), ["vm1"], "no netns made for nope");
    } finally {
      await fx.cleanup();
    }
  },
);

Deno.test(
  "cli: --netns-prefix - exits 2 naming the rule, and creates nothing",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "vmnic-prefix-" });
    try {
      const flags = [
        `--root-dir=${join(dir, "root")}`,
        `--run-dir=${join(dir, "run")}`,
      ];
      for (
        const argv of [
          ["add", "vm1", "--netns-prefix", "-"],
          ["--netns-prefix=-", "prepare", "vm1"],
          ["list", "--netns-prefix", "-"],
        ]
      ) {
        const what = argv.join(" ");
        const r = await runCli([...flags, "--json", ...argv]);
        const e = jsonError(r, 2, what);
        assertErrorShape(e, "InvalidInputError", "open");
        assert.match(e.reason!, /invalid netns prefix "-"/, what);
        assert.match(e.reason!, /starting with a letter or digit/, what);
        const human = await runCli([...flags, ...argv]);
        assert.equal(human.code, 2, what);
        assert.match(human.stderr, /starting with a letter or digit/, what);
      }
      assert.deepEqual([...Deno.readDirSync(dir)], [], "no root or run dir");
      // Other runs make netns meanwhile: look for this one's only.
      assert.deepEqual(
        (await netnsNames()).filter((n) => n.startsWith("-")),
        [],
        "no netns made",
      );
      await assert.rejects(
        Deno.lstat(claimPath("/var/run/netns", "-")),
        Deno.errors.NotFound,
        "no claim on the prefix",
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

rootTest(
  "cli: --wait bounds the wait for a VM another process holds; VmBusyError names the holder",
  async () => {
    const fx = await makeFixture("wt", { octet: 224 });
    let holder: Deno.ChildProcess | undefined;
    try {
      const nics = await fx.cliOk<NicConfig[]>(["add", "vm1"]);
      holder = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-read",
          `--allow-write=${fx.runDir}`,
          "--allow-ffi",
          "--allow-sys=uid",
          LOCK_HOLDER,
          fx.runDir,
          "vm1",
        ],
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const lines = holder.stdout.pipeThrough(new TextDecoderStream())
        .getReader();
      const { value: first } = await lines.read();
      lines.releaseLock();
      assert.equal(first?.trim(), "acquired", "the holder took vm1's lock");

      for (
        const [wait, argv] of [
          ["0", ["add", "vm1", "--nics", "2"]],
          ["0", ["verify", "vm1"]],
          ["0.5", ["remove", "vm1", "0"]],
        ] as const
      ) {
        const what = `--wait ${wait} ${argv.join(" ")}`;
        const start = performance.now();
        const r = await fx.cli(["--wait", wait, ...argv]);
        const elapsed = performance.now() - start;
        const e = jsonError(r, 1, what);
        assertErrorShape(e, "VmBusyError", argv[0]);
        assert.equal(e.object, "vm1");
        assert.ok(
          e.message.includes(`pid ${holder.pid}`),
          `${what}: names the holder's pid ${holder.pid}: ${e.message}`,
        );
        assert.match(e.message, /\(test\)/, `${what}: names its operation`);
        assert.match(e.message, /since \d{4}-/, `${what}: and since when`);
        if (wait === "0") {
          assert.ok(elapsed < 5_000, `${what}: did not wait (${elapsed} ms)`);
        } else {
          assert.ok(elapsed >= 500, `${what}: waited (${elapsed} ms)`);
        }
      }
      // Nothing changed meanwhile.
      assert.deepEqual(await fx.cliOk(["list", "--vm", "vm1"]), nics);

      holder.kill("SIGTERM");
      await holder.status;
      await holder.stdout.cancel().catch(() => {});
      holder = undefined;
      const v = await fx.cli(["--wait", "0", "verify", "vm1"]);
      assert.equal(v.code, 0, v.stdout + v.stderr);
    } finally {
      if (holder) {
        holder.kill("SIGKILL");
        await holder.status;
        await holder.stdout.cancel().catch(() => {});
      }
      await fx.cleanup();
    }
  },
);

rootTest(
  "cli: --plugin-timeout kills a hanging plugin with its children and rolls the add back",
  async () => {
    const plugin = "vmnict-slow";
    const pids = await Deno.makeTempDir({ prefix: "vmnic-pids-" });
    const script = [
      "#!/bin/sh",
      'case "$CNI_COMMAND" in',
      "  VERSION)",
      `    echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}' ;;`,
      "  ADD)",
      `    echo $$ > ${pids}/sh.pid`,
      "    sleep 5 &",
      `    echo $! > ${pids}/sleep.pid`,
      "    wait",
      "    exit 1 ;;",
      "  *) exit 0 ;;",
      "esac",
      "",
    ].join("\n");
    const fx = await makeFixture("pt", {
      octet: 225,
      fakePlugins: { [plugin]: script },
      extraPlugins: [{ type: plugin }],
    });
    const path = join(fx.binDir, plugin);
    try {
      const start = performance.now();
      const r = await fx.cli(["--plugin-timeout", "1", "add", "vm1"]);
      const elapsed = performance.now() - start;
      const e = jsonError(r, 1, "add with a hanging plugin");
      assert.equal(e.op, "add");
      assert.match(e.message, /timed out after 1000 ms/);
      assert.ok(e.message.includes(plugin), `names the plugin: ${e.message}`);
      assert.match(e.message, /rolled back/);
      assert.ok(elapsed < 2500, `failed in ${Math.round(elapsed)} ms, not 5 s`);

      // The plugin and what it forked are gone.
      const pgrep = await run("pgrep", ["-f", path]);
      assert.equal(pgrep.code, 1, `still running: ${pgrep.stdout}`);
      for (const f of ["sh.pid", "sleep.pid"]) {
        const pid = Number((await Deno.readTextFile(join(pids, f))).trim());
        assert.ok(pid > 0, f);
        assert.equal(await isAlive(pid), false, `${f} ${pid} killed`);
      }
      // Rolled back: no netns, record or lease.
      assert.deepEqual(await fx.netns(), []);
      assert.deepEqual(await fx.cliOk(["list"]), []);
      assert.deepEqual(await fx.cliOk(["vms"]), []);
      assert.deepEqual(await fx.leasedIps(), []);
    } finally {
      await fx.cleanup();
      await Deno.remove(pids, { recursive: true });
    }
  },
);

Deno.test(
  "cli: every command's --help exits 0 with its usage and options; vmnic --help lists them all",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "vmnic-help-" });
    const flags = [
      `--root-dir=${join(dir, "root")}`,
      `--run-dir=${join(dir, "run")}`,
    ];
    try {
      const top = await runCli([...flags, "--help"]);
      assert.equal(top.code, 0, top.stderr);
      assert.match(top.stdout, /^Usage: vmnic <command>/m);
      for (const [name, entry] of Object.entries(COMMANDS)) {
        assert.match(
          top.stdout,
          new RegExp(`^  ${escape(name)} +${escape(entry.summary)}$`, "m"),
          `vmnic --help lists ${name}`,
        );
      }
      for (const g of Object.keys(GLOBAL_OPTIONS)) {
        assert.ok(top.stdout.includes(`--${g}`), `vmnic --help shows --${g}`);
      }

      const results = [];
      const names = Object.keys(COMMANDS);
      for (let i = 0; i < names.length; i += 6) {
        results.push(
          ...await Promise.all(
            names.slice(i, i + 6).map(async (name) => ({
              name,
              command: (await COMMANDS[name].load()).default,
              r: await runCli([...flags, name, "--help"]),
              before: await runCli([...flags, "--help", name]),
            })),
          ),
        );
      }
      for (const { name, command, r, before } of results) {
        assert.equal(r.code, 0, `${name} --help: ${r.stderr}`);
        assert.equal(r.stderr, "", `${name} --help`);
        assert.equal(command.name, name, `${name}'s module is ${name}`);
        assert.ok(
          r.stdout.startsWith(`Usage: vmnic ${name}`),
          `${name} --help: ${r.stdout.slice(0, 80)}`,
        );
        assert.ok(r.stdout.includes(COMMANDS[name].summary), name);
        for (const opt of Object.keys(command.options)) {
          assert.ok(r.stdout.includes(`--${opt}`), `${name} --help: --${opt}`);
        }
        for (const g of ["json", "wait", "plugin-timeout"]) {
          assert.ok(r.stdout.includes(`--${g}`), `${name} --help: --${g}`);
        }
        assert.equal(before.code, 0, `--help ${name}`);
        assert.equal(before.stdout, r.stdout, `--help before ${name}`);
      }
      assert.deepEqual(
        [...Deno.readDirSync(dir)],
        [],
        "--help creates nothing",
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

/** `s` as a literal in a RegExp. */
function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

rootTest(
  "cli: errors have one JSON shape: { error: { type, message, op, object, reason } }",
  async () => {
    const fx = await makeFixture("er", { octet: 226 });
    try {
      // Invalid input, refused before anything is opened.
      const badMac = await fx.cli([
        "add",
        "vm1",
        "--index",
        "1",
        "--mac",
        "0a:58:zz:00:00:01",
      ]);
      const e1 = jsonError(badMac, 2, "bad MAC");
      assertErrorShape(e1, "InvalidInputError", "add");
      assert.match(e1.reason!, /invalid MAC "0a:58:zz:00:00:01"/);

      // Not found, from the provider.
      const nf = await fx.cli(["inspect", "no-such-id"]);
      const e2 = jsonError(nf, 3, "inspect no-such-id");
      assertErrorShape(e2, "NotFoundError", "inspect");
      assert.equal(e2.object, "no-such-id");
      const nfVm = await fx.cli(["verify", "nope"]);
      const e3 = jsonError(nfVm, 3, "verify nope");
      assertErrorShape(e3, "NotFoundError", "verify");
      assert.equal(e3.object, "nope");

      // Without --json: one line, the same message (which names the
      // operation and object: "vmnic inspect no-such-id: …").
      const human = await fx.cli(["inspect", "no-such-id"], { json: false });
      assert.equal(human.code, 3);
      assert.equal(human.stderr.trim(), `vmnic ${e2.message}`);
      assert.match(human.stderr, /^vmnic inspect no-such-id: /);

      // Progress of a long run: with --json, stderr is JSON lines too.
      const ids = Array.from({ length: 11 }, (_, i) => `gone${i}`);
      const many = await fx.cli(["delete", ...ids]);
      assert.equal(many.code, 0);
      const lines = many.stderr.trim().split("\n").filter((l) =>
        l.startsWith('{"progress"')
      );
      assert.equal(lines.length, 11);
      assert.deepEqual(JSON.parse(lines[10]), {
        progress: { op: "delete", id: "gone10", done: 11, total: 11 },
      });
      assert.deepEqual(await fx.netns(), []);
    } finally {
      await fx.cleanup();
    }
  },
);
