/**
 * Crash safety: for every fault point the vmnic CLI is SIGKILLed right
 * there (`VMNIC_FAULT_POINT`), as a power cut or the OOM killer would, then
 * `delete` (or `gc --active ''`, or a fresh `add`) is run without the fault,
 * and nothing may be left: no netns, no veth on the bridge, no lease, no
 * record.
 */
import assert from "node:assert/strict";
import { rootTest } from "../support/harness.ts";
import { FAULT_POINTS, type FaultPoint } from "../../src/provider/faults.ts";
import {
  type CliRun,
  describe,
  killedBySigkill,
  leaseFiles,
  makeEnv,
  randomBelow,
  type TestEnv,
} from "./_env.ts";

/** How a crash is recovered from. */
type Recovery = "delete" | "gc" | "add" | "recover";

/** One crash case: which operation is armed, and how it is cleaned up. */
interface CrashCase {
  point: FaultPoint;
  /** The operation that reaches the point. */
  via: "add" | "remove" | "delete" | "recover";
  recovery: Recovery;
}

/** The operation that reaches each point first. */
function operationOf(point: FaultPoint): "add" | "remove" | "delete" {
  if (point.startsWith("add:")) return "add";
  if (point.startsWith("delete:")) return "delete";
  return "remove"; // remove:* and teardown:* (remove tears NICs down)
}

/** Every point recovered by delete; some also by gc, by add, or reached by delete. */
function cases(): CrashCase[] {
  const out: CrashCase[] = FAULT_POINTS.map((point) => ({
    point,
    via: operationOf(point),
    recovery: "delete" as const,
  }));
  for (
    const point of [
      "add:netns-created",
      "add:cni-added",
      "teardown:unplumbed",
      "remove:marked",
      "delete:marked",
      "delete:nic-torn-down",
    ] as const
  ) {
    out.push({ point, via: operationOf(point), recovery: "gc" });
  }
  // A crashed add's half-made NIC is finished by the next add of that VM.
  for (const point of ["add:record-inserted", "add:plumbed"] as const) {
    out.push({ point, via: "add", recovery: "add" });
  }
  // Teardown points are reached by delete as well as by remove.
  for (const point of ["teardown:unplumbed", "teardown:cni-deleted"] as const) {
    out.push({ point, via: "delete", recovery: "delete" });
  }
  // recover tears each NIC down, then adds it again with the same MAC and
  // IPs: a crash anywhere in between must not lose them.
  for (
    const point of [
      "teardown:cni-deleted",
      "add:record-inserted",
      "add:cni-added",
      "add:plumbed",
    ] as const
  ) {
    out.push({ point, via: "recover", recovery: "recover" });
  }
  out.push({ point: "add:cni-added", via: "recover", recovery: "delete" });
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
  const armed = { env: { VMNIC_FAULT_POINT: c.point } };
  let crashed: CliRun;
  let identity = "";
  if (c.via === "add") {
    crashed = await env.cli(["add", vm, "--nics", String(NICS)], armed);
  } else {
    const setup = await env.cli(["add", vm, "--nics", String(NICS)]);
    if (!ok(setup, "setup add")) return problems;
    identity = nicIdentity(setup.stdout);
    crashed = c.via === "remove"
      ? await env.cli(["remove", vm, "1"], armed)
      : c.via === "recover"
      ? await env.cli(["recover", vm], armed)
      : await env.cli(["delete", vm], armed);
  }
  if (!killedBySigkill(crashed)) {
    problems.push(`${c.via} did not die by SIGKILL: ${describe(crashed)}`);
  }
  // The checker must see what the crash left (only a crash after the very
  // last step of delete leaves nothing), or its "no leaks" proves nothing.
  const remains = await env.leaks();
  if (c.point !== "delete:netns-deleted" && !remains.length) {
    problems.push("the leak checker saw nothing after the crash");
  }
  if (c.via === "remove") {
    // The crash concerned NIC 1 only: NIC 0 is still recorded.
    const l = await env.cli(["list", "--vm", vm]);
    if (ok(l, "list after crash")) {
      const idx = (JSON.parse(l.stdout) as { index: number }[]).map((n) =>
        n.index
      );
      if (!idx.includes(0)) {
        problems.push(`NIC 0 lost by a crash in remove of NIC 1: ${idx}`);
      }
    }
  }
  switch (c.recovery) {
    case "delete": {
      const r = await env.cli(["delete", vm]);
      if (ok(r, "recovery delete")) {
        const res = JSON.parse(r.stdout) as { deleted: string[] };
        if (!res.deleted.includes(vm)) {
          problems.push(`delete did not report ${vm} deleted: ${r.stdout}`);
        }
      }
      break;
    }
    case "gc": {
      const r = await env.cli(["gc", "--active", ""]);
      if (ok(r, "recovery gc")) {
        const res = JSON.parse(r.stdout) as { collected: string[] };
        if (!res.collected.includes(vm)) {
          problems.push(`gc did not collect ${vm}: ${r.stdout}`);
        }
      }
      break;
    }
    case "recover": {
      const r = await env.cli(["recover", vm]);
      if (ok(r, "recover after crash")) {
        const l = await env.cli(["list", "--vm", vm]);
        if (ok(l, "list after recover") && nicIdentity(l.stdout) !== identity) {
          problems.push(
            `recover after a crash changed the NICs: had ${identity}, now ${
              nicIdentity(l.stdout)
            }`,
          );
        }
      }
      ok(await env.cli(["delete", vm]), "delete after recover");
      break;
    }
    case "add": {
      const r = await env.cli(["add", vm, "--nics", String(NICS)]);
      if (ok(r, "add after crash")) {
        const l = await env.cli(["list", "--vm", vm]);
        if (ok(l, "list after re-add")) {
          const nics = JSON.parse(l.stdout) as { ips: unknown[] }[];
          const leases = await leaseCount(env);
          if (nics.length !== NICS || leases !== NICS) {
            problems.push(
              `after re-add: ${nics.length} records, ${leases} leases, want ${NICS} each`,
            );
          }
        }
      }
      ok(await env.cli(["delete", vm]), "delete after re-add");
      break;
    }
  }
  return problems;
}

/** Index, MAC and IPs of each NIC in a JSON list, as one comparable string. */
function nicIdentity(json: string): string {
  const nics = JSON.parse(json) as {
    index: number;
    mac: string;
    ips: { address: string; prefix: number }[];
  }[];
  return nics.map((n) =>
    `${n.index}=${n.mac}/${n.ips.map((ip) => `${ip.address}/${ip.prefix}`)}`
  ).sort().join(" ");
}

async function leaseCount(env: TestEnv): Promise<number> {
  return (await leaseFiles(env.ipamDir)).length;
}

rootTest(
  "crash: SIGKILL at every fault point, then recovery leaves nothing",
  async () => {
    const env = await makeEnv("rcr", {
      subnet: `10.237.${1 + randomBelow(250)}.0/24`,
    });
    const all = cases();
    let failures = 0;
    let leaks = 0;
    const report: string[] = [];
    try {
      for (const [i, c] of all.entries()) {
        const vm = `crash${i}`;
        const name = `${c.point} via ${c.via}, recovered by ${c.recovery}`;
        const problems = await runCase(env, c, vm);
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
      console.log(
        `crash: ${all.length} cases tried, ${failures} failures, ${leaks} leaks found`,
      );
      await env.cleanup();
    }
    // Every fault point is tried at least once.
    assert.deepEqual(
      [...new Set(all.map((c) => c.point))].sort(),
      [...FAULT_POINTS].sort(),
    );
    assert.equal(failures, 0, report.join("\n"));
    assert.equal(leaks, 0, report.join("\n"));
  },
);
