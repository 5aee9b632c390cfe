/**
 * Crash safety, in two parts.
 *
 * 1. Fault points: for every point of `FAULT_POINTS` the vmnic CLI is
 *    SIGKILLed right there (`VMNIC_FAULT_POINT`), as a power cut or the OOM
 *    killer would, in each operation that reaches it; then the documented
 *    way out (docs/state-machine.md, "Getting out of every state") is run
 *    without the fault: after a crash in add a retried `add` (the NICs asked
 *    for, whole, one lease each, the same JSON on a further retry) or
 *    `delete` or `gc`; after a crash in a teardown the same teardown again
 *    (or any operation on the VM); after a crash in recover `recover` again
 *    (same ids, MACs, IPs, TAPs); after quiesce `recover`. The warm pool's
 *    points crash `serve --pool` while it fills a slot or while an add
 *    claims one; the way out is the daemon's next start, or gc. Then the VM
 *    is deleted and nothing may be left: no netns, veth on the bridge,
 *    lease, record, pool slot, lock file, backup.
 *
 * 2. Random-time kills: two lanes (each its own install, so each lane's
 *    leak check is its own) SIGKILL or SIGTERM `add`, `remove`, `delete`,
 *    `recover` and `gc` at a random moment of their run, at least 200 times
 *    in all. After a SIGKILL the documented recovery runs; after a SIGTERM
 *    none may be needed (exit 1 `InterruptedError` with what it began
 *    rolled back, or 0 when it had finished). Each case ends with the VM
 *    checked (whole or gone), deleted, and a leak check.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { rootTest, run } from "../support/harness.ts";
import { FAULT_POINTS, type FaultPoint } from "../../src/provider/faults.ts";
import {
  type CliRun,
  describe,
  interrupted,
  killedBySigkill,
  makeEnv,
  nicIdentity,
  type NicJson,
  randomBelow,
  runCli,
  spawnCli,
  type TestEnv,
} from "./_env.ts";
import {
  checkGone,
  checkWhole,
  nicsOf,
  unsettled,
  type Via,
  vmIds,
} from "./_checks.ts";

// ------------------------------------------------------------ fault points

/** The operation that is crashed, and what is set up for it first. */
type Crashed =
  | "add" // a fresh VM: add --nics 2
  | "hotadd" // a VM with NIC 0: add --index 1
  | "remove" // a VM with NICs 0, 1: remove 1
  | "delete" // a VM with NICs 0, 1: delete
  | "gc" // a VM with NICs 0, 1: gc --active ''
  | "repair" // a VM with NICs 0, 1 whose tap1 is gone: recover (in place)
  | "rebuild" // a VM with NICs 0, 1 whose eth1 is gone: recover (rebuild)
  | "quiesce"; // a VM with NICs 0, 1: quiesce

/** The way out run after the crash. */
type Recovery = "add" | "delete" | "gc" | "remove" | "recover";

interface CrashCase {
  point: FaultPoint;
  via: Crashed;
  recovery: Recovery;
}

const ADD_POINTS = FAULT_POINTS.filter((p) => p.startsWith("add:"));
const RETIRE_POINTS = FAULT_POINTS.filter((p) => p.startsWith("retire:"));
const DELETE_POINTS = FAULT_POINTS.filter((p) => p.startsWith("delete:"));

function cases(): CrashCase[] {
  const out: CrashCase[] = [];
  const push = (point: FaultPoint, via: Crashed, recovery: Recovery) =>
    out.push({ point, via, recovery });
  // Add: a retried add, and separately delete; gc and recover for some.
  for (const p of ADD_POINTS) {
    push(p, "add", "add");
    push(p, "add", "delete");
  }
  for (
    const p of ["add:netns-created", "add:cni-added", "add:active"] as const
  ) {
    push(p, "add", "gc");
  }
  for (const p of ["add:cni-added", "add:plumbed"] as const) {
    push(p, "add", "recover");
  }
  // A hot-add's crash must not touch the NIC that was there.
  for (
    const p of [
      "add:netns-created",
      "add:record-inserted",
      "add:cni-added",
      "add:plumbed",
      "add:active",
    ] as const
  ) {
    push(p, "hotadd", "add");
  }
  // Teardowns: the same again; any operation on the VM finishes it.
  for (const p of RETIRE_POINTS) {
    push(p, "remove", "remove");
    push(p, "remove", "delete");
    push(p, "delete", "delete");
    push(p, "gc", "gc");
  }
  for (const p of DELETE_POINTS) {
    push(p, "delete", "delete");
    push(p, "gc", "gc");
    push(p, "delete", "gc");
  }
  // A delete cut short is finished by the next operation, never revived.
  push("delete:marked", "delete", "add");
  push("delete:nic-retired", "delete", "add");
  push("delete:nic-retired", "delete", "recover");
  // Recover: in place, and a rebuild crashed at each of its steps.
  push("recover:repaired", "repair", "recover");
  push("recover:nic-retired", "rebuild", "recover");
  push("recover:nic-retired", "rebuild", "delete");
  for (
    const p of [
      "retire:unplumbed",
      "retire:cni-deleted",
      "add:record-inserted",
      "add:cni-added",
      "add:plumbed",
      "add:active",
    ] as const
  ) {
    push(p, "rebuild", "recover");
  }
  push("quiesce:recorded", "quiesce", "recover");
  return out;
}

const NICS = 2;

/** Runs one case; returns what went wrong (empty: fine). */
async function runCase(env: TestEnv, c: CrashCase, vm: string) {
  const problems: string[] = [];
  const ok = (r: CliRun, what: string) => {
    if (r.code !== 0) problems.push(`${what}: ${describe(r)}`);
    return r.code === 0;
  };
  const ns = env.prefix + vm;
  // ---- set up
  let before: NicJson[] = [];
  if (c.via === "hotadd") {
    const r = await env.cli(["add", vm, "--index", "0"]);
    if (!ok(r, "setup add")) return problems;
    before = JSON.parse(r.stdout);
  } else if (c.via !== "add") {
    const r = await env.cli(["add", vm, "--nics", String(NICS)]);
    if (!ok(r, "setup add")) return problems;
    before = JSON.parse(r.stdout);
    if (c.via === "rebuild" || c.via === "repair") {
      const dev = c.via === "rebuild" ? "eth1" : "tap1";
      const del = await run("ip", ["-n", ns, "link", "del", dev]);
      if (del.code !== 0) problems.push(`ip link del ${dev}: ${del.stderr}`);
    }
  }
  const identity = nicIdentity(before);
  // ---- crash
  const armed = { env: { VMNIC_FAULT_POINT: c.point } };
  const args: Record<Crashed, string[]> = {
    add: ["add", vm, "--nics", String(NICS)],
    hotadd: ["add", vm, "--index", "1"],
    remove: ["remove", vm, "1"],
    delete: ["delete", vm],
    gc: ["gc", "--active", ""],
    repair: ["recover", vm],
    rebuild: ["recover", vm],
    quiesce: ["quiesce", vm],
  };
  const crashed = await env.cli(args[c.via], armed);
  if (!killedBySigkill(crashed)) {
    problems.push(`${c.via} did not die by SIGKILL: ${describe(crashed)}`);
  }
  // The checker must see what the crash left, or its "no leaks" proves
  // nothing.
  if (!(await env.leaks()).length) {
    problems.push("the leak checker saw nothing after the crash");
  }
  const afterCrash = await nicsOf(env, vm);
  if (typeof afterCrash === "string") problems.push(afterCrash);
  if (c.via === "remove" && typeof afterCrash !== "string") {
    const n0 = afterCrash.find((n) => n.index === 0);
    if (n0?.state !== "active") {
      problems.push(
        `NIC 0 touched by a crash in remove of NIC 1: ${n0?.state}`,
      );
    }
  }
  // ---- the way out
  let survives = true;
  switch (c.recovery) {
    case "delete": {
      const r = await env.cli(["delete", vm]);
      if (ok(r, "recovery delete")) {
        const res = JSON.parse(r.stdout) as { deleted: string[] };
        if (!res.deleted.includes(vm)) {
          problems.push(`delete did not report ${vm} deleted: ${r.stdout}`);
        }
      }
      survives = false;
      break;
    }
    case "gc": {
      const r = await env.cli(["gc", "--active", ""]);
      if (ok(r, "recovery gc")) {
        const res = JSON.parse(r.stdout) as { collected: string[] };
        // A crash after the VM's last record went leaves nothing to collect.
        const recorded = typeof afterCrash !== "string" && afterCrash.length;
        if (recorded && !res.collected.includes(vm)) {
          problems.push(`gc did not collect ${vm}: ${r.stdout}`);
        }
      }
      survives = false;
      break;
    }
    case "remove": {
      const r = await env.cli(["remove", vm, "1"]);
      if (ok(r, "recovery remove")) {
        const res = JSON.parse(r.stdout) as {
          removed: number[];
          absent: number[];
        };
        if (!res.removed.includes(1) && !res.absent.includes(1)) {
          problems.push(`remove again: ${r.stdout}`);
        }
        const nic0 = nicIdentity(before.filter((n) => n.index === 0));
        const w = await checkWhole(env, vm, { indices: [0], identity: nic0 });
        problems.push(...w.problems);
      }
      break;
    }
    case "add": {
      const argv = c.via === "hotadd"
        ? ["add", vm, "--index", "1"]
        : ["add", vm, "--nics", String(NICS)];
      const r = await env.cli(argv);
      if (ok(r, "retried add")) {
        const w = await checkWhole(env, vm, { indices: [0, 1] });
        problems.push(...w.problems);
        if (c.via === "hotadd") {
          const nic0 = w.nics.filter((n) => n.index === 0);
          if (nicIdentity(nic0) !== identity) {
            problems.push(
              `NIC 0 changed by a hot-add's crash and retry: ${identity} → ${
                nicIdentity(nic0)
              }`,
            );
          }
        }
        if (c.via === "delete") {
          // The delete was finished, not revived: new NICs.
          const old = new Set(before.map((n) => n.id));
          if (w.nics.some((n) => old.has(n.id))) {
            problems.push(`a crashed delete was revived: ${r.stdout}`);
          }
        }
        // Once more: the same JSON.
        const again = await env.cli(argv);
        if (ok(again, "second retried add") && again.stdout !== r.stdout) {
          problems.push(
            `a retried add returned other JSON:\n${r.stdout}\n---\n${again.stdout}`,
          );
        }
      }
      break;
    }
    case "recover": {
      const r = await env.cli(["recover", vm]);
      if (c.via === "delete") {
        // The delete is finished; there is nothing to recover.
        if (r.code !== 3) {
          problems.push(`recover after a crashed delete: ${describe(r)}`);
        }
        survives = false;
        break;
      }
      if (ok(r, "recover after crash")) {
        const res = JSON.parse(r.stdout) as { problems: unknown[] };
        if (res.problems.length) {
          problems.push(`recover problems: ${JSON.stringify(res.problems)}`);
        }
        const indices = c.via === "add"
          ? (typeof afterCrash === "string" ? [] : afterCrash)
            .map((n) => n.index)
          : [0, 1];
        const w = await checkWhole(env, vm, {
          indices,
          identity: c.via === "add" ? undefined : identity,
          state: c.via === "quiesce" ? "quiesced" : "active",
        });
        problems.push(...w.problems);
      }
      break;
    }
  }
  if (survives) ok(await env.cli(["delete", vm]), "final delete");
  problems.push(...await checkGone(env, vm));
  return problems;
}

// ------------------------------------------------------------ warm pool

const POOL_POINTS = FAULT_POINTS.filter((p) => p.startsWith("pool:"));

/** Waits until the install has `n` ready pool slots; false on timeout. */
async function poolReady(env: TestEnv, n: number, ms = 20_000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const r = await env.cli(["list", "--pool"]);
    if (r.code === 0) {
      const slots = JSON.parse(r.stdout) as NicJson[];
      if (slots.filter((x) => x.state === "active").length >= n) return true;
    }
    await new Promise((res) => setTimeout(res, 100));
  }
  return false;
}

/**
 * A crash of the daemon (`serve --pool`) at a pool point: while it fills a
 * slot, or while a VM's add claims one. The way out is the next start of
 * the daemon (it finishes or undoes what the crash left) or a gc; then the
 * add is retried and must give a whole VM, and nothing may be left once the
 * VM and the pool are gone.
 */
async function poolCase(
  env: TestEnv,
  point: FaultPoint,
  recovery: "restart" | "gc",
  vm: string,
): Promise<string[]> {
  const problems: string[] = [];
  const sock = join(env.dir, `${vm}.sock`);
  const serve = [
    ...env.flags,
    "serve",
    "--socket",
    sock,
    "--pool",
    `${env.network}=1`,
  ];
  const viaDaemon = (args: string[]) =>
    runCli([...env.flags, "--socket", sock, "--json", ...args], {
      timeoutMs: 30_000,
    });
  const daemon = spawnCli(serve, { env: { VMNIC_FAULT_POINT: point } });
  try {
    if (point !== "pool:slot-recorded") {
      if (!(await poolReady(env, 1))) problems.push("no slot became ready");
      const add = await viaDaemon(["add", vm]);
      if (add.code === 0) {
        problems.push(`add through the crashing daemon: ${add.stdout}`);
      }
    }
    const end = await Promise.race([
      daemon.done,
      new Promise<null>((res) => setTimeout(() => res(null), 20_000)),
    ]);
    if (!end || !killedBySigkill(end)) {
      problems.push(
        `the daemon did not die at ${point}: ${
          end ? describe(end) : "still running"
        }`,
      );
      return problems;
    }
  } finally {
    daemon.kill("SIGKILL");
    await daemon.done;
  }
  if (!(await env.leaks()).length) {
    problems.push("the leak checker saw nothing after the crash");
  }
  if (recovery === "restart") {
    const again = spawnCli(serve);
    try {
      if (!(await poolReady(env, 1))) problems.push("restart: no slot ready");
      const add = await viaDaemon(["add", vm]);
      if (add.code !== 0) problems.push(`add after restart: ${describe(add)}`);
      problems.push(...(await checkWhole(env, vm, { indices: [0] })).problems);
    } finally {
      again.kill("SIGTERM");
      const out = await again.done;
      if (out.code !== 0) problems.push(`serve on SIGTERM: ${describe(out)}`);
    }
  } else {
    const gc = await env.cli(["gc", "--active", ""]);
    if (gc.code !== 0) problems.push(`gc: ${describe(gc)}`);
    const add = await env.cli(["add", vm]);
    if (add.code !== 0) problems.push(`add after gc: ${describe(add)}`);
    problems.push(...(await checkWhole(env, vm, { indices: [0] })).problems);
  }
  const del = await env.cli(["delete", vm]);
  if (del.code !== 0) problems.push(`delete: ${describe(del)}`);
  const gc = await env.cli(["gc", "--active", "", "--include-pool"]);
  if (gc.code !== 0) problems.push(`gc --include-pool: ${describe(gc)}`);
  problems.push(...await checkGone(env, vm));
  return problems;
}

rootTest(
  "crash: SIGKILL at every fault point, then the documented recovery leaves nothing",
  async () => {
    const env = await makeEnv("rcr", {
      subnet: `10.237.${1 + randomBelow(250)}.0/24`,
    });
    const all = cases();
    let failures = 0;
    let leaks = 0;
    let tried = 0;
    const report: string[] = [];
    const t0 = Date.now();
    try {
      const pool = POOL_POINTS.flatMap((point) =>
        (["restart", "gc"] as const).map((recovery) => ({ point, recovery }))
      );
      const runs = [
        ...all.map((c, i) => ({
          name: `${c.point} via ${c.via}, recovered by ${c.recovery}`,
          run: () => runCase(env, c, `crash${i}`),
        })),
        ...pool.map((c, i) => ({
          name: `${c.point} in serve --pool, recovered by ${c.recovery}`,
          run: () => poolCase(env, c.point, c.recovery, `pool${i}`),
        })),
      ];
      const only = Deno.env.get("VMNIC_TEST_ONLY");
      for (const { name, run: go } of runs) {
        if (only && !name.includes(only)) continue;
        tried++;
        const problems = await go();
        const left = await env.leaks();
        if (problems.length) {
          failures++;
          report.push(`FAIL ${name}: ${problems.join("; ")}`);
        }
        if (left.length) {
          leaks += left.length;
          report.push(`LEAK ${name}: ${left.join(", ")}`);
          // Later cases start clean, so each leak is charged to its own case.
          await env.reset();
        }
      }
    } finally {
      if (report.length) console.log(report.join("\n"));
      console.log(`(${Math.round((Date.now() - t0) / 1000)} s)`);
      console.log(
        `crash: ${tried} cases tried, ${failures} failures, ${leaks} leaks found`,
      );
      leaks += (await env.cleanup()).length;
    }
    // Every fault point is tried at least once.
    assert.deepEqual(
      [...new Set([...all.map((c) => c.point), ...POOL_POINTS])].sort(),
      [...FAULT_POINTS].sort(),
    );
    assert.equal(failures, 0, report.join("\n"));
    assert.equal(leaks, 0, report.join("\n"));
  },
);

// ---------------------------------------------------------- random kills

/** The operations killed at random moments. */
const KILLED_OPS = [
  "add",
  "hotadd",
  "remove",
  "delete",
  "recover",
  "gc",
] as const;
type KilledOp = typeof KILLED_OPS[number];

/** Kills wanted per run, over both lanes. */
const MIN_KILLS = 200;
const LANES = 2;
/** Beyond this the suite gives up (and fails: too few kills). */
const DEADLINE_MS = 540_000;

/** Counts of one run. */
class KillTally {
  cases = 0;
  kills = 0;
  bySignal = { SIGKILL: 0, SIGTERM: 0 } as Record<string, number>;
  /** What the kill found: nothing begun, cut short, or finished. */
  outcome = { untouched: 0, partial: 0, finished: 0 };
  byOp = Object.fromEntries(KILLED_OPS.map((o) => [o, 0])) as Record<
    KilledOp,
    number
  >;
  failures: string[] = [];
  leaks: string[] = [];
}

/**
 * Typical durations per operation (ms), learnt from unkilled runs, and of
 * the start-up before an operation touches anything (a read-only `vms`).
 */
class Durations {
  #ms = new Map<string, number>();
  note(op: string, ms: number): void {
    const old = this.#ms.get(op);
    this.#ms.set(op, old === undefined ? ms : Math.round(old * 0.8 + ms * 0.2));
  }
  /**
   * A moment to kill `op`: mostly between the end of start-up and a little
   * past its usual end (where there is state to leave half-made), sometimes
   * during start-up.
   */
  pick(op: string): number {
    const d = this.#ms.get(op) ?? 300;
    const startup = Math.min(this.#ms.get("startup") ?? 100, d / 2);
    const [lo, hi] = randomBelow(100) < 85 ? [startup * 0.8, d] : [0, startup];
    return Math.round(lo + randomBelow(Math.max(1, Math.round(hi - lo))));
  }
}

/** One random-kill case in one lane; returns its problems. */
async function killCase(
  env: TestEnv,
  lane: number,
  n: number,
  durations: Durations,
  t: KillTally,
): Promise<string[]> {
  const via: Via = "library";
  const problems: string[] = [];
  const op = KILLED_OPS[randomBelow(KILLED_OPS.length)];
  const sig: Deno.Signal = randomBelow(10) < 6 ? "SIGKILL" : "SIGTERM";
  const vm = `rk${lane}n${n}`;
  const keep = `rk${lane}keep${n}`;
  const ok = (r: CliRun, what: string) => {
    if (r.code !== 0) problems.push(`${what}: ${describe(r)}`);
    else durations.note(what.split(" ")[0], r.end - r.start);
    return r.code === 0;
  };
  // ---- set up
  let before: NicJson[] = [];
  let keptBefore: NicJson[] = [];
  if (op === "hotadd") {
    const r = await env.cli(["add", vm, "--index", "0"]);
    if (!ok(r, "add setup")) return problems;
    before = JSON.parse(r.stdout);
  } else if (op !== "add") {
    const r = await env.cli(["add", vm, "--nics", "2"]);
    if (!ok(r, "add setup")) return problems;
    before = JSON.parse(r.stdout);
    if (op === "gc") {
      const k = await env.cli(["add", keep]);
      if (!ok(k, "add setup")) return problems;
      keptBefore = JSON.parse(k.stdout);
    }
    if (op === "recover") {
      // Something for recover to do: nothing, a TAP, or a whole veth.
      const dev = ["", "tap1", "eth1"][randomBelow(3)];
      if (dev) await run("ip", ["-n", env.prefix + vm, "link", "del", dev]);
    }
  }
  const identity = nicIdentity(before);
  const args: Record<KilledOp, string[]> = {
    add: ["add", vm, "--nics", "2"],
    hotadd: ["add", vm, "--index", "1"],
    remove: ["remove", vm, "1"],
    delete: ["delete", vm],
    recover: ["recover", vm],
    gc: ["gc", "--active", keep],
  };
  // ---- kill
  const r = await env.cli(args[op], {
    sendSignal: sig,
    signalAfterMs: durations.pick(op),
    timeoutMs: 30_000,
  });
  t.cases++;
  if (r.sent) {
    t.kills++;
    t.bySignal[sig]++;
    t.byOp[op]++;
  } else if (r.code === 0) {
    durations.note(op, r.end - r.start);
  }
  if (r.timedOut) problems.push(`${op} hung: ${describe(r)}`);
  const name = `${op} ${sig}${
    r.sent ? ` at ${r.sentAt! - r.start} ms` : " (finished first)"
  }`;
  const finished = r.code === 0;
  const killed = r.sent === "SIGKILL" && !finished;
  if (r.sent === "SIGTERM") {
    // Done, rolled back (InterruptedError), or the signal came before vmnic
    // listened for it (nothing begun).
    const fine = finished || r.signal === "SIGTERM" || interrupted(r);
    if (!fine) problems.push(`${name}: ${describe(r)}`);
    if (r.end - r.sentAt! > 5000) {
      problems.push(`${name}: exited ${r.end - r.sentAt!} ms after SIGTERM`);
    }
  } else if (r.sent === "SIGKILL" && !killedBySigkill(r) && !finished) {
    problems.push(`${name}: ${describe(r)}`);
  } else if (!r.sent && !finished) {
    problems.push(`${name}: ${describe(r)}`);
  }
  // ---- what the kill left
  const left = await nicsOf(env, vm, via);
  const leftNics = typeof left === "string" ? [] : left;
  if (typeof left === "string") problems.push(left);
  const stale = unsettled(leftNics);
  const ids = await vmIds(env, via);
  const exists = typeof ids !== "string" && ids.includes(vm);
  const vmDeleting = exists && (await vmDeletingFlag(env, vm));
  const snap = (e: boolean, nics: NicJson[]) =>
    `${e}|${nicIdentity(nics)}|${nics.map((n) => n.state)}`;
  if (finished) t.outcome.finished++;
  else if (snap(exists, leftNics) === snap(op !== "add", before)) {
    t.outcome.untouched++;
  } else t.outcome.partial++;
  if (!killed) {
    // Nothing may need an operation: no NIC half-done, no delete cut short.
    if (stale.length) problems.push(`${name}: ${stale.join(", ")}`);
    if (vmDeleting) problems.push(`${name}: ${vm} left deleting`);
  }
  // ---- the way out after SIGKILL; after SIGTERM, none may be needed
  const gone = async () => problems.push(...await checkGone(env, vm, via));
  const whole = async (indices: number[], idt?: string) =>
    problems.push(
      ...(await checkWhole(env, vm, { indices, identity: idt }, via)).problems,
    );
  switch (op) {
    case "add": {
      if (!killed) {
        // Interrupted: rolled back, the VM this call made with it.
        if (finished) await whole([0, 1]);
        else await gone();
        break;
      }
      const way = ["add", "delete", "gc"][randomBelow(3)];
      if (way === "add") {
        const a = await env.cli(args.add);
        if (ok(a, "add retried")) {
          await whole([0, 1]);
          const b = await env.cli(args.add);
          if (ok(b, "add again") && b.stdout !== a.stdout) {
            problems.push(`${name}: a second retry gave other JSON`);
          }
        }
      } else if (way === "delete") {
        ok(await env.cli(["delete", vm]), "delete after kill");
        await gone();
      } else {
        ok(await env.cli(["gc", "--active", ""]), "gc after kill");
        await gone();
      }
      break;
    }
    case "hotadd": {
      const nic0 = nicIdentity(before);
      if (killed) {
        const a = await env.cli(args.hotadd);
        if (ok(a, "add retried")) await whole([0, 1]);
      } else {
        // Interrupted: NIC 1 rolled back.
        await whole(finished ? [0, 1] : [0]);
      }
      const now = await nicsOf(env, vm, via);
      const got = typeof now === "string"
        ? now
        : nicIdentity(now.filter((n) => n.index === 0));
      if (got !== nic0) problems.push(`${name}: NIC 0 changed: ${got}`);
      break;
    }
    case "remove": {
      const nic0 = nicIdentity(before.filter((n) => n.index === 0));
      if (killed) {
        ok(await env.cli(args.remove), "remove again");
        await whole([0], nic0);
      } else if (finished || leftNics.length === 1) {
        await whole([0], nic0);
      } else {
        await whole([0, 1], identity);
      }
      break;
    }
    case "delete": {
      if (killed) ok(await env.cli(args.delete), "delete again");
      if (killed || finished || !exists) await gone();
      else await whole([0, 1], identity);
      break;
    }
    case "recover": {
      // After SIGKILL, the way out; after SIGTERM, what the interrupted one
      // was for (the VM was broken on purpose), never a repair of its own
      // leftovers (checked above).
      if (!finished) {
        const a = await env.cli(args.recover);
        if (ok(a, "recover again")) {
          const res = JSON.parse(a.stdout) as { problems: unknown[] };
          if (res.problems.length) {
            problems.push(`${name}: recover: ${JSON.stringify(res.problems)}`);
          }
        }
      }
      await whole([0, 1], identity);
      break;
    }
    case "gc": {
      if (killed) ok(await env.cli(args.gc), "gc again");
      if (killed || finished || !exists) await gone();
      else await whole([0, 1], identity);
      const k = await checkWhole(
        env,
        keep,
        { indices: [0], identity: nicIdentity(keptBefore) },
        via,
      );
      problems.push(...k.problems);
      break;
    }
  }
  // ---- clean up and look for leaks
  const rest = [vm, ...(op === "gc" ? [keep] : [])];
  const del = await env.cli(["delete", ...rest]);
  if (del.code !== 0) problems.push(`final delete: ${describe(del)}`);
  return problems.map((p) => p.startsWith(name) ? p : `${name}: ${p}`);
}

async function vmDeletingFlag(env: TestEnv, vm: string): Promise<boolean> {
  const p = await env.open();
  try {
    return (await p.vms()).some((v) => v.vmId === vm && v.deleting);
  } finally {
    p.close();
  }
}

rootTest(
  `crash: ${MIN_KILLS}+ SIGKILL/SIGTERM at random moments of add, remove, delete, recover, gc`,
  async () => {
    const t = new KillTally();
    const envs: TestEnv[] = [];
    const t0 = Date.now();
    try {
      for (let l = 0; l < LANES; l++) {
        envs.push(
          await makeEnv(`rk${l}`, {
            subnet: `10.235.${l * 100 + 1 + randomBelow(90)}.0/24`,
          }),
        );
      }
      const durations = envs.map(() => new Durations());
      for (const [i, env] of envs.entries()) {
        for (let k = 0; k < 3; k++) {
          const r = await env.cli(["vms"]);
          durations[i].note("startup", r.end - r.start);
        }
      }
      await Promise.all(envs.map(async (env, lane) => {
        for (let n = 0;; n++) {
          if (t.kills >= MIN_KILLS || Date.now() - t0 > DEADLINE_MS) return;
          const problems = await killCase(env, lane, n, durations[lane], t);
          const leaks = await env.leaks({ library: true });
          t.failures.push(...problems);
          if (leaks.length) {
            t.leaks.push(`lane ${lane} case ${n}: ${leaks.join(", ")}`);
            await env.reset();
          }
        }
      }));
    } finally {
      for (const f of t.failures) console.log(`FAIL ${f}`);
      for (const l of t.leaks) console.log(`LEAK ${l}`);
      console.log(
        `(${t.kills} kills: ${JSON.stringify(t.bySignal)}, by operation ${
          JSON.stringify(t.byOp)
        }; state found: ${JSON.stringify(t.outcome)}; ${
          Math.round((Date.now() - t0) / 1000)
        } s)`,
      );
      console.log(
        `random-kills: ${t.cases} cases tried, ${t.failures.length} failures, ${t.leaks.length} leaks found`,
      );
      for (const env of envs) t.leaks.push(...await env.cleanup());
    }
    assert.ok(t.kills >= MIN_KILLS, `only ${t.kills} kills`);
    assert.deepEqual(t.failures, []);
    assert.deepEqual(t.leaks, []);
  },
);
