/**
 * Processes end cleanly (issue #9, item 9).
 *
 * - SIGTERM and SIGINT (sometimes twice) sent to `add`, `remove`, `delete`,
 *   `recover` and `gc` at random moments, on a network whose chain has a
 *   slow plugin so that signals land mid-operation: the process exits
 *   within a few seconds, with 0 (it had finished) or 1 and an
 *   `InterruptedError` (what it began rolled back), and then nothing needs
 *   gc: each VM is whole (`verify` ok) or wholly gone, no NIC is left
 *   `adding`/`deleting`, no leak.
 * - A plugin that hangs is killed with its process group at
 *   `--plugin-timeout`: no descendant is left (checked in /proc); a plugin
 *   that exits 0 leaving a child holding its stdout is not waited for.
 * - `--wait` is bounded and the error names the holder.
 * - gc removes lock files of VMs that no longer exist (and no other).
 * - A custom `--netns-dir` leaves no mount behind once its last VM is
 *   deleted (/proc/self/mountinfo).
 * - An insecure hooks dir (0777) refuses `add` before any CNI plugin runs.
 */
import { join } from "node:path";
import assert from "node:assert/strict";
import { rootTest, run } from "../support/harness.ts";
import { acquireVmLock } from "../../src/store/locks.ts";
import {
  describe,
  interrupted,
  jsonError,
  makeEnv,
  netnsDirMounts,
  nicIdentity,
  type NicJson,
  prefixedNetns,
  randomBelow,
  type TestEnv,
} from "./_env.ts";
import {
  checkGone,
  checkWhole,
  exitIs,
  nicsOf,
  Tally,
  unsettled,
} from "./_checks.ts";
import {
  alive,
  hangPlugin,
  passPlugin,
  pidsIn,
  spyPlugin,
} from "./_plugins.ts";

/** Signal cases per lane. */
const CASES_PER_LANE = 15;
const LANES = 2;
/** How long a process may take to exit after the signal. */
const EXIT_WITHIN_MS = 5000;
/** The slow plugin's sleep per ADD and DEL. */
const SLOW_MS = 250;

/** A network whose chain is bridge + a plugin that sleeps on ADD and DEL. */
async function addSlowNetwork(env: TestEnv): Promise<void> {
  await Deno.writeTextFile(
    join(env.cniConfDir, "20-slow.conflist"),
    JSON.stringify({
      cniVersion: "1.0.0",
      name: "slow",
      plugins: [
        {
          type: "bridge",
          bridge: env.bridge,
          isGateway: true,
          ipam: {
            type: "host-local",
            ranges: [[{ subnet: env.subnet }]],
            dataDir: env.ipamDir,
          },
        },
        { type: "vmnict-pass", sleepMs: SLOW_MS },
      ],
    }),
  );
}

const OPS = ["add", "remove", "delete", "recover", "gc"] as const;
type Op = typeof OPS[number];

interface SignalStats {
  interrupted: number;
  finished: number;
  early: number;
}

/**
 * One signal case; returns its problems. Each operation has more than one
 * step (three NICs to add, two to remove or rebuild, two VMs to delete or
 * collect), so a signal can land between steps.
 */
async function signalCase(
  env: TestEnv,
  vm: string,
  stats: SignalStats,
): Promise<string[]> {
  const problems: string[] = [];
  const op = OPS[randomBelow(OPS.length)];
  const sig: Deno.Signal = randomBelow(2) ? "SIGTERM" : "SIGINT";
  const twice = randomBelow(4) === 0;
  const vm2 = `${vm}b`;
  const keep = `${vm}k`;
  const before = new Map<string, NicJson[]>();
  const setup = async (id: string, nics: number, network = "slow") => {
    const r = await env.cli([
      "add",
      id,
      "--nics",
      String(nics),
      "--network",
      network,
    ]);
    if (r.code !== 0) throw new Error(`setup add ${id}: ${describe(r)}`);
    before.set(id, JSON.parse(r.stdout));
  };
  try {
    if (op === "remove" || op === "recover") await setup(vm, 3);
    if (op === "delete" || op === "gc") {
      await setup(vm, 2);
      await setup(vm2, 2);
    }
    if (op === "gc") await setup(keep, 1, env.network);
  } catch (e) {
    return [(e as Error).message];
  }
  if (op === "recover") {
    // Two NICs to rebuild: their veths go.
    for (const dev of ["eth1", "eth2"]) {
      await run("ip", ["-n", env.prefix + vm, "link", "del", dev]);
    }
  }
  const args: Record<Op, string[]> = {
    add: ["add", vm, "--nics", "3", "--network", "slow"],
    remove: ["remove", vm, "1", "2"],
    delete: ["delete", vm, vm2],
    recover: ["recover", vm],
    gc: ["gc", "--active", keep],
  };
  // Each slow plugin call takes SLOW_MS and more: aim inside the run.
  const span: Record<Op, number> = {
    add: 4 * SLOW_MS,
    remove: 2 * SLOW_MS,
    delete: 4 * SLOW_MS,
    recover: 5 * SLOW_MS,
    gc: 4 * SLOW_MS,
  };
  const at = 150 + randomBelow(span[op]);
  // A second signal must not cut the rollback short.
  const r = await env.cli(args[op], {
    sendSignal: sig,
    signalAfterMs: at,
    repeatSignalAfterMs: twice ? 50 : undefined,
    timeoutMs: 30_000,
  });
  const name = `${op} ${sig}${twice ? "×2" : ""} at ${at} ms`;
  if (Deno.env.get("VMNIC_TEST_DEBUG")) {
    console.log(`${name}: sent ${r.sent}, ${describe(r).slice(0, 160)}`);
  }
  const finished = r.code === 0;
  if (!r.sent || finished) stats.finished++;
  else if (interrupted(r)) stats.interrupted++;
  else if (r.signal === sig) stats.early++;
  else problems.push(`exit: ${describe(r)}`);
  if (r.sent && r.end - r.sentAt! > EXIT_WITHIN_MS) {
    problems.push(`exited ${r.end - r.sentAt!} ms after ${sig}`);
  }
  if (r.timedOut) problems.push(`hung: ${describe(r)}`);
  // Nothing may need gc: no NIC half-done, each VM whole or wholly gone,
  // with the NICs it had (those an interrupted teardown had not reached).
  const settled = async (id: string, gone: boolean) => {
    const left = await nicsOf(env, id, "library");
    if (typeof left === "string") return problems.push(left);
    problems.push(...unsettled(left));
    if (gone || !left.length) {
      return problems.push(...await checkGone(env, id, "library"));
    }
    const had = before.get(id) ?? [];
    const indices = left.map((n) => n.index);
    problems.push(
      ...(await checkWhole(env, id, {
        indices,
        identity: nicIdentity(had.filter((n) => indices.includes(n.index))),
      }, "library")).problems,
    );
  };
  switch (op) {
    case "add":
      // Finished: whole; interrupted: rolled back, the VM with it.
      if (finished) {
        problems.push(
          ...(await checkWhole(env, vm, { indices: [0, 1, 2] }, "library"))
            .problems,
        );
      } else {
        problems.push(...await checkGone(env, vm, "library"));
        const left = await nicsOf(env, vm, "library");
        if (typeof left !== "string" && left.length) {
          problems.push(
            `interrupted add left NICs ${left.map((n) => n.index)}`,
          );
        }
      }
      break;
    case "remove": {
      await settled(vm, false);
      const left = await nicsOf(env, vm, "library");
      const idx = typeof left === "string" ? [] : left.map((n) => n.index);
      if (!idx.includes(0)) problems.push("NIC 0 was removed");
      if (finished && idx.length !== 1) problems.push(`finished, left ${idx}`);
      break;
    }
    case "delete":
      await settled(vm, finished);
      await settled(vm2, finished);
      break;
    case "recover": {
      // Interrupted between NICs, one may still be broken (as before):
      // recover again is what the caller wanted; nothing half-done may
      // stand in its way.
      const left = await nicsOf(env, vm, "library");
      if (typeof left !== "string") problems.push(...unsettled(left));
      if (!finished) {
        const again = await env.cli(["recover", vm]);
        if (again.code !== 0) problems.push(`recover: ${describe(again)}`);
      }
      problems.push(
        ...(await checkWhole(env, vm, {
          indices: [0, 1, 2],
          identity: nicIdentity(before.get(vm) ?? []),
        }, "library")).problems,
      );
      break;
    }
    case "gc":
      await settled(vm, finished);
      await settled(vm2, finished);
      problems.push(
        ...(await checkWhole(env, keep, {
          indices: [0],
          identity: nicIdentity(before.get(keep) ?? []),
        }, "library")).problems,
      );
      break;
  }
  const d = await env.cli(["delete", vm, vm2, keep]);
  if (d.code !== 0) problems.push(`final delete: ${describe(d)}`);
  return problems.map((p) => `${name}: ${p}`);
}

rootTest("signals: processes end cleanly, nothing left for gc", async () => {
  const t = new Tally();
  const envs: TestEnv[] = [];
  const stats: SignalStats = { interrupted: 0, finished: 0, early: 0 };
  const started: number[] = [];
  try {
    for (let l = 0; l < LANES; l++) {
      const env = await makeEnv(`rsg${l}`, {
        subnet: `10.230.${l * 100 + 1 + randomBelow(90)}.0/24`,
        fakePlugins: { "vmnict-pass": passPlugin() },
      });
      envs.push(env);
      await addSlowNetwork(env);
    }
    // ---- random SIGTERM / SIGINT
    await Promise.all(envs.map(async (env, lane) => {
      for (let n = 0; n < CASES_PER_LANE; n++) {
        const name = `lane ${lane} case ${n}`;
        const problems = await signalCase(env, `sg${lane}n${n}`, stats);
        t.case(name, problems);
        const leaks = await env.leaks({ library: true });
        if (leaks.length) {
          t.leaked(name, leaks);
          await env.reset();
        }
      }
    }));
    console.log(
      `(signals: ${stats.interrupted} interrupted mid-operation, ${stats.finished} finished, ${stats.early} before vmnic listened)`,
    );
    t.case("enough signals landed mid-operation", [
      stats.interrupted >= 6
        ? null
        : `only ${stats.interrupted} InterruptedErrors: the signals missed`,
    ]);

    const env = envs[0];
    // ---- a hanging plugin: killed with its group at --plugin-timeout
    const pidFile = join(env.dir, "hang.pids");
    await Deno.writeTextFile(
      join(env.binDir, "vmnict-hang"),
      hangPlugin(pidFile),
      { mode: 0o755 },
    );
    const childPidFile = join(env.dir, "child.pid");
    for (
      const [name, plugin] of [
        ["hang", { type: "vmnict-hang" }],
        ["leavechild", {
          type: "vmnict-pass",
          leaveChildPidFile: childPidFile,
        }],
      ] as const
    ) {
      await Deno.writeTextFile(
        join(env.cniConfDir, `30-${name}.conflist`),
        JSON.stringify({
          cniVersion: "1.0.0",
          name,
          plugins: [
            {
              type: "bridge",
              bridge: env.bridge,
              ipam: {
                type: "host-local",
                ranges: [[{ subnet: env.subnet }]],
                dataDir: env.ipamDir,
              },
            },
            plugin,
          ],
        }),
      );
    }
    const hang = await env.cli([
      "--plugin-timeout",
      "1",
      "add",
      "hangvm",
      "--network",
      "hang",
    ]);
    const pids = await pidsIn(pidFile);
    started.push(...pids);
    const living = [];
    for (const pid of pids) if (await alive(pid)) living.push(pid);
    t.case("a hanging plugin is killed with its group at --plugin-timeout", [
      exitIs(hang, 1, "add"),
      /vmnict-hang/.test(describe(hang)) && /timed out/.test(describe(hang))
        ? null
        : `unclear: ${describe(hang)}`,
      hang.end - hang.start < 8000
        ? null
        : `took ${hang.end - hang.start} ms with a 1 s timeout`,
      pids.length === 2 ? null : `pids recorded: ${pids}`,
      living.length ? `still running: ${living} (plugin, its child)` : null,
      ...await checkGone(env, "hangvm"),
    ]);
    const lc = await env.cli(["add", "lcvm", "--network", "leavechild"]);
    const childPid = (await pidsIn(childPidFile))[0];
    if (childPid) started.push(childPid);
    t.case("a plugin leaving a child on its stdout is not waited for", [
      exitIs(lc, 0, "add"),
      lc.end - lc.start < 10_000 ? null : `took ${lc.end - lc.start} ms`,
      childPid ? null : "the plugin left no child (test broken)",
    ]);
    const dlc = await env.cli(["delete", "lcvm"]);
    t.case("lcvm deleted", [
      exitIs(dlc, 0, "delete"),
      ...await checkGone(env, "lcvm"),
    ]);

    // ---- --wait is bounded and names the holder
    const held = await env.cli(["add", "busy"]);
    t.case("busy added", [exitIs(held, 0, "add busy")]);
    const lock = await acquireVmLock(env.runDir, "busy", {
      waitMs: 0,
      op: "test-holder",
    });
    try {
      const w = await env.cli(["--wait", "1", "add", "busy", "--index", "1"]);
      const e = jsonError(w);
      t.case("--wait 1 gives up after about a second, naming the holder", [
        exitIs(w, 1, "add"),
        e?.type === "VmBusyError" ? null : `not VmBusyError: ${describe(w)}`,
        e && e.message.includes(String(Deno.pid)) &&
          e.message.includes("test-holder")
          ? null
          : `the holder is not named: ${e?.message}`,
        w.end - w.start < 4000 ? null : `took ${w.end - w.start} ms`,
      ]);
    } finally {
      lock?.release();
    }
    t.case("the busy VM is untouched", [
      ...(await checkWhole(env, "busy", {
        indices: [0],
        identity: held.code === 0 ? nicIdentity(JSON.parse(held.stdout)) : "",
      })).problems,
    ]);

    // ---- gc removes lock files of VMs that no longer exist
    for (const ghost of ["ghost1", "ghost2"]) {
      (await acquireVmLock(env.runDir, ghost, { waitMs: 0, op: "test" }))
        ?.release();
    }
    const locks = join(env.runDir, "locks");
    const gc = await env.cli(["gc", "--active", "busy"]);
    const lockFiles = (await Array.fromAsync(Deno.readDir(locks))).map((e) =>
      e.name
    );
    t.case("gc removes lock files of VMs that no longer exist", [
      exitIs(gc, 0, "gc"),
      lockFiles.some((f) => f.startsWith("ghost"))
        ? `left: ${lockFiles}`
        : null,
    ]);
    const db = await env.cli(["delete", "busy"]);
    t.case("busy deleted", [
      exitIs(db, 0, "delete"),
      ...await checkGone(env, "busy"),
    ]);

    // ---- an insecure hooks dir: refused before any plugin runs
    const spyLog = join(env.dir, "spy.log");
    await Deno.writeTextFile(
      join(env.binDir, "vmnict-spy"),
      spyPlugin(spyLog),
      {
        mode: 0o755,
      },
    );
    await Deno.writeTextFile(
      join(env.cniConfDir, "40-spy.conflist"),
      JSON.stringify({
        cniVersion: "1.0.0",
        name: "spy",
        plugins: [{ type: "vmnict-spy" }],
      }),
    );
    await Deno.mkdir(env.hooksDir, { recursive: true });
    await Deno.chmod(env.hooksDir, 0o777);
    try {
      const before = await prefixedNetns(env);
      const r = await env.cli(["add", "hookvm", "--network", "spy"]);
      let spied = "";
      try {
        spied = await Deno.readTextFile(spyLog);
      } catch { /* never ran: right */ }
      t.case("an insecure hooks dir refuses add before any CNI call", [
        r.code === 1 || r.code === 2 ? null : `add: ${describe(r)}`,
        /writable/.test(describe(r)) ? null : `unclear: ${describe(r)}`,
        spied ? `a plugin ran: ${spied.trim().split("\n")}` : null,
        JSON.stringify(await prefixedNetns(env)) === JSON.stringify(before)
          ? null
          : "a netns was made",
        ...await checkGone(env, "hookvm"),
      ]);
    } finally {
      await Deno.chmod(env.hooksDir, 0o755);
    }
    for (const e of envs) t.leaked(e.prefix, await e.leaks());

    // ---- a custom netns dir keeps no mount once its last VM is gone
    const nsRoot = await Deno.makeTempDir({ prefix: "vmnic-rel-nsdir-" });
    const custom = await makeEnv("rsgn", {
      subnet: `10.230.${201 + randomBelow(50)}.0/24`,
      netnsDir: join(nsRoot, "netns"),
    });
    try {
      for (const vm of ["c1", "c2"]) {
        t.case(`custom netns dir: add ${vm}`, [
          exitIs(await custom.cli(["add", vm]), 0, `add ${vm}`),
          ...(await checkWhole(custom, vm, { indices: [0] })).problems,
        ]);
      }
      const mounted = await netnsDirMounts(custom.netnsDir);
      const d1 = await custom.cli(["delete", "c1"]);
      const still = await netnsDirMounts(custom.netnsDir);
      t.case("custom netns dir: mounted while a VM is there", [
        mounted ? null : "no mount on the custom netns dir (test broken?)",
        exitIs(d1, 0, "delete c1"),
        still === mounted ? null : `mounts ${mounted} → ${still} with c2 alive`,
        ...(await checkWhole(custom, "c2", { indices: [0] })).problems,
      ]);
      const gcLast = await custom.cli(["gc", "--active", ""]);
      t.case("custom netns dir: no mount after the last VM went (gc)", [
        exitIs(gcLast, 0, "gc"),
        (await netnsDirMounts(custom.netnsDir))
          ? `still mounted: ${await netnsDirMounts(custom.netnsDir)}`
          : null,
      ]);
      const again = await custom.cli(["add", "c3"]);
      const d3 = await custom.cli(["delete", "c3"]);
      t.case("custom netns dir: no mount after the last VM went (delete)", [
        exitIs(again, 0, "add c3"),
        exitIs(d3, 0, "delete c3"),
        (await netnsDirMounts(custom.netnsDir))
          ? `still mounted: ${await netnsDirMounts(custom.netnsDir)}`
          : null,
      ]);
      t.leaked(custom.prefix, await custom.leaks());
    } finally {
      t.leaked("cleanup custom", await custom.cleanup());
      await Deno.remove(nsRoot, { recursive: true }).catch(() => {});
    }
  } finally {
    // Processes the fake plugins started, by pid (a hang's leftovers would
    // be a finding above; this only keeps the machine tidy).
    for (const pid of started) {
      if (await alive(pid)) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
    }
    t.print("signals");
    for (const e of envs) t.leaked(`cleanup ${e.prefix}`, await e.cleanup());
  }
  assert.deepEqual(t.failures, []);
  assert.deepEqual(t.leaks, []);
});
