/**
 * Concurrency: 8 lanes of vmnic CLI processes add and delete 50 VMs on one
 * network at the same time, while a 9th lane keeps listing. Half the VMs
 * stay until the end. Checked: every operation succeeds within its timeout
 * (no deadlock), no two VMs alive at the same time hold the same IP, no
 * record is lost or outlives its delete, `list` ends with exactly the
 * survivors, and nothing is left after they are deleted.
 */
import assert from "node:assert/strict";
import { rootTest } from "../support/harness.ts";
import { type CliRun, describe, makeEnv, type TestEnv } from "./_env.ts";

const LANES = 8;
const VMS = 50;
/** The whole test, beyond which it counts as deadlocked. */
const DEADLINE_MS = 240_000;
/** One CLI process. */
const OP_TIMEOUT_MS = 60_000;

interface NicJson {
  id: string;
  vmId: string;
  index: number;
  ips: { address: string }[];
}

/** What happened to one VM, with wall-clock bounds of its add and delete. */
interface VmLife {
  vm: string;
  keep: boolean;
  nics?: NicJson[];
  addStart?: number;
  addEnd?: number;
  delStart?: number;
  delEnd?: number;
}

class Tally {
  tried = 0;
  /** list snapshots taken while the lanes ran, and the most VMs one showed. */
  snapshots = 0;
  maxVmsSeen = 0;
  failures: string[] = [];
  fail(msg: string): void {
    this.failures.push(msg);
  }
}

async function addVm(env: TestEnv, life: VmLife, t: Tally): Promise<void> {
  t.tried++;
  life.addStart = Date.now();
  const r = await env.cli(
    ["add", life.vm, "--nics", life.keep ? "2" : "1"],
    { timeoutMs: OP_TIMEOUT_MS },
  );
  life.addEnd = Date.now();
  if (r.code !== 0) return t.fail(`add ${life.vm}: ${describe(r)}`);
  life.nics = JSON.parse(r.stdout) as NicJson[];
  if (life.nics.length !== (life.keep ? 2 : 1)) {
    t.fail(`add ${life.vm}: ${life.nics.length} NICs returned`);
  }
  for (const n of life.nics) {
    if (n.ips.length !== 1) {
      t.fail(`add ${life.vm}: NIC ${n.index} IPs ${n.ips}`);
    }
  }
}

async function deleteVms(
  env: TestEnv,
  lives: VmLife[],
  t: Tally,
): Promise<void> {
  if (!lives.length) return;
  t.tried++;
  const start = Date.now();
  for (const l of lives) l.delStart = start;
  const r = await env.cli(["delete", ...lives.map((l) => l.vm)], {
    timeoutMs: OP_TIMEOUT_MS,
  });
  const end = Date.now();
  for (const l of lives) l.delEnd = end;
  const what = lives.map((l) => l.vm).join(" ");
  if (r.code !== 0) return t.fail(`delete ${what}: ${describe(r)}`);
  const res = JSON.parse(r.stdout) as { deleted: string[] };
  const missing = lives.filter((l) => !res.deleted.includes(l.vm));
  if (missing.length) t.fail(`delete ${what}: not deleted: ${r.stdout}`);
}

/**
 * Checks one `list` snapshot: no duplicate IP, every VM whose add finished
 * before the list began and whose delete had not begun before it ended is
 * there with the NICs its add returned, no VM deleted before it began is.
 */
function checkSnapshot(
  r: CliRun,
  lives: VmLife[],
  t: Tally,
): void {
  if (r.code !== 0) return t.fail(`list: ${describe(r)}`);
  const recs = JSON.parse(r.stdout) as NicJson[];
  t.snapshots++;
  t.maxVmsSeen = Math.max(t.maxVmsSeen, new Set(recs.map((n) => n.vmId)).size);
  const byIp = new Map<string, string>();
  for (const n of recs) {
    for (const ip of n.ips) {
      const other = byIp.get(ip.address);
      if (other) {
        t.fail(
          `list: IP ${ip.address} held by ${other} and ${n.vmId}/${n.index}`,
        );
      }
      byIp.set(ip.address, `${n.vmId}/${n.index}`);
    }
  }
  const ids = new Set(recs.map((n) => n.id));
  const vms = new Set(recs.map((n) => n.vmId));
  for (const l of lives) {
    const alive = l.nics && l.addEnd! < r.start &&
      (l.delStart === undefined || l.delStart > r.end);
    if (alive) {
      const lost = l.nics!.filter((n) => !ids.has(n.id));
      if (lost.length) {
        t.fail(`list: records of ${l.vm} lost: ${lost.map((n) => n.id)}`);
      }
    }
    if (l.delEnd !== undefined && l.delEnd < r.start && vms.has(l.vm)) {
      t.fail(`list: ${l.vm} still recorded after its delete finished`);
    }
  }
}

/** VMs that certainly coexisted must hold distinct IPs. */
function checkIpOverlaps(lives: VmLife[], t: Tally): void {
  const done = lives.filter((l) => l.nics);
  for (let i = 0; i < done.length; i++) {
    for (let j = i + 1; j < done.length; j++) {
      const [a, b] = [done[i], done[j]];
      const coexisted = a.addEnd! < (b.delStart ?? Infinity) &&
        b.addEnd! < (a.delStart ?? Infinity);
      if (!coexisted) continue;
      const ipsA = new Set(
        a.nics!.flatMap((n) => n.ips.map((ip) => ip.address)),
      );
      for (const ip of b.nics!.flatMap((n) => n.ips.map((x) => x.address))) {
        if (ipsA.has(ip)) {
          t.fail(`IP ${ip} given to ${a.vm} and ${b.vm} at once`);
        }
      }
    }
  }
  // Within one VM, too.
  for (const l of done) {
    const ips = l.nics!.flatMap((n) => n.ips.map((ip) => ip.address));
    if (new Set(ips).size !== ips.length) t.fail(`${l.vm}: IPs ${ips}`);
  }
}

/**
 * One lane's share: lanes 0-3 delete each short-lived VM right after adding
 * it; lanes 4-7 add all theirs first, then delete the short-lived ones in
 * one `delete`, so many VMs coexist.
 */
async function lane(
  env: TestEnv,
  n: number,
  lives: VmLife[],
  t: Tally,
  stop: { now: boolean },
): Promise<void> {
  const mine = lives.filter((_, i) => i % LANES === n);
  const batch = n >= LANES / 2;
  for (const l of mine) {
    if (stop.now) return;
    await addVm(env, l, t);
    if (!batch && !l.keep && l.nics) await deleteVms(env, [l], t);
  }
  if (batch && !stop.now) {
    await deleteVms(env, mine.filter((l) => !l.keep && l.nics), t);
  }
}

rootTest(
  "concurrency: 8 lanes add/delete 50 VMs: distinct IPs, no lost record, no leak",
  async () => {
    const env = await makeEnv("rcc", { subnet: "10.236.0.0/16" });
    const t = new Tally();
    let leaks: string[] = [];
    const lives: VmLife[] = Array.from({ length: VMS }, (_, i) => ({
      vm: `cc${String(i).padStart(2, "0")}`,
      keep: i % 2 === 0,
    }));
    const stop = { now: false };
    let deadline: ReturnType<typeof setTimeout> | undefined;
    try {
      const lanes = Promise.all(
        Array.from({ length: LANES }, (_, n) => lane(env, n, lives, t, stop)),
      ).finally(() => (stop.now = true));
      const monitor = (async () => {
        while (!stop.now) {
          t.tried++;
          const r = await env.cli(["list"], { timeoutMs: OP_TIMEOUT_MS });
          checkSnapshot(r, lives, t);
        }
      })();
      const timedOut = new Promise<"timeout">((resolve) => {
        deadline = setTimeout(() => resolve("timeout"), DEADLINE_MS);
      });
      const outcome = await Promise.race([
        Promise.all([lanes, monitor]),
        timedOut,
      ]);
      if (outcome === "timeout") {
        stop.now = true;
        t.fail(`not done within ${DEADLINE_MS} ms: deadlock?`);
        await Promise.allSettled([lanes, monitor]);
      }
      checkIpOverlaps(lives, t);
      // Otherwise the checks above saw no concurrency at all.
      if (t.snapshots < 3 || t.maxVmsSeen < LANES) {
        t.fail(
          `too little overlap observed: ${t.snapshots} snapshots, at most ${t.maxVmsSeen} VMs`,
        );
      }

      // The survivors: exactly the long-lived VMs, with the NICs their adds returned.
      t.tried++;
      const final = await env.cli(["list"]);
      checkSnapshot(final, lives, t);
      if (final.code === 0) {
        const got = (JSON.parse(final.stdout) as NicJson[]).map((n) => n.id)
          .sort();
        const want = lives.filter((l) => l.keep).flatMap((l) =>
          (l.nics ?? []).map((n) => n.id)
        ).sort();
        if (JSON.stringify(got) !== JSON.stringify(want)) {
          t.fail(`final list: ${got.length} records, want ${want.length}`);
        }
      }

      // Survivors deleted by 4 processes at once, then nothing may be left.
      const keepers = lives.filter((l) => l.keep);
      await Promise.all(
        [0, 1, 2, 3].map((k) =>
          deleteVms(env, keepers.filter((_, i) => i % 4 === k), t)
        ),
      );
      leaks = await env.leaks();
    } finally {
      clearTimeout(deadline);
      stop.now = true;
      for (const f of t.failures) console.log(`FAIL ${f}`);
      for (const l of leaks) console.log(`LEAK ${l}`);
      console.log(
        `(${t.snapshots} list snapshots, up to ${t.maxVmsSeen} VMs at once)`,
      );
      console.log(
        `concurrency: ${t.tried} cases tried, ${t.failures.length} failures, ${leaks.length} leaks found`,
      );
      await env.cleanup();
    }
    assert.deepEqual(t.failures, []);
    assert.deepEqual(leaks, []);
  },
);
