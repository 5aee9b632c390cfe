/**
 * The store can't silently lose the truth (issue #9, item 7).
 *
 * Lost database: with VMs on the host, `vmnic.db` is truncated (and, in a
 * second round, removed with its side files): `list`, `vms`, `add`,
 * `delete`, `gc`, `remove`, `recover`, `verify`, `prepare` must all refuse
 * (exit 1, RecordsLostError) and change nothing; `restore-records` brings
 * back every VM with the same NIC ids, MACs and IPs; then `delete` leaves
 * nothing. A third round takes the documented way of giving the VMs up
 * (`gc --include-unknown --active ''`, then removing `records/`).
 *
 * Full disk: the root dir lives on a 512 KiB tmpfs mounted by the test
 * (host-local's leases outside it). The disk fills (a) before the add, so
 * its first record write fails; (b) from a fake CNI plugin chained after
 * bridge, so the write after CNI ADD fails; (c) from an `afterAdd` hook, so
 * the writes after the NICs are made fail. Each time the error must name
 * the real cause (never "cannot rollback - no transaction is active"), the
 * rollback must complete (no netns, no veth, no lease), and once space is
 * freed `delete` or `gc` must leave nothing.
 */
import { join } from "node:path";
import assert from "node:assert/strict";
import { ipJson, rootTest, run, sh } from "../support/harness.ts";
import {
  type CliRun,
  describe,
  jsonError,
  leaseFiles,
  leaseOwner,
  makeEnv,
  nicIdentity,
  type NicJson,
  prefixedNetns,
  randomBelow,
  type TestEnv,
} from "./_env.ts";
import { checkGone, checkWhole, exitIs, leasesOf, Tally } from "./_checks.ts";
import { passPlugin } from "./_plugins.ts";

/** Every file under `dir` with its size and a hash of its content. */
async function fingerprint(dir: string): Promise<string> {
  const out: string[] = [];
  const walk = async (d: string) => {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(d));
    } catch {
      return;
    }
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(d, e.name);
      if (e.isDirectory) await walk(p);
      else {
        const bytes = await Deno.readFile(p);
        const h = new Uint8Array(
          await crypto.subtle.digest("SHA-256", bytes),
        ).slice(0, 6);
        out.push(`${p} ${bytes.length} ${[...h].map((b) => b.toString(16))}`);
      }
    }
  };
  await walk(dir);
  return out.join("\n");
}

/** What the host holds of the install, to see that refusals change nothing. */
async function hostState(env: TestEnv): Promise<string> {
  const leases: string[] = [];
  for (const f of await leaseFiles(env.ipamDir)) {
    leases.push(`${f}=${await leaseOwner(join(env.ipamDir, f))}`);
  }
  const ports = (await ipJson("link")).filter((l) => l.master === env.bridge)
    .map((l) => String(l.ifname)).sort();
  let claim = "";
  try {
    claim = await Deno.readTextFile(env.claimFile);
  } catch { /* none */ }
  return JSON.stringify(
    {
      netns: await prefixedNetns(env),
      leases,
      ports,
      claim,
      root: await fingerprint(env.rootDir),
      run: await fingerprint(env.runDir),
    },
    null,
    1,
  );
}

function recordsLost(r: CliRun, what: string): string[] {
  const e = jsonError(r);
  return [
    exitIs(r, 1, what),
    e?.type === "RecordsLostError"
      ? null
      : `${what}: not RecordsLostError: ${e ? e.message : describe(r)}`,
    e && /restore-records/.test(e.message)
      ? null
      : `${what}: the error does not give the way out: ${e?.message}`,
  ].filter((p): p is string => p !== null);
}

/** The commands that must refuse while the records are lost. */
const REFUSED: string[][] = [
  ["list"],
  ["vms"],
  ["add", "r1", "--nics", "2"],
  ["add", "rnew"],
  ["delete", "r1"],
  ["gc", "--active", ""],
  ["remove", "r1", "1"],
  ["recover", "r1"],
  ["verify", "r1"],
  ["prepare", "rnew"],
  ["inspect", "0123456789abcdef"],
];

async function lostDatabase(t: Tally, env: TestEnv): Promise<void> {
  for (const round of ["truncate", "remove", "give up"] as const) {
    const want: Record<string, { indices: number[]; identity: string }> = {};
    for (const [vm, n] of [["r1", 2], ["r2", 1]] as const) {
      const r = await env.cli(["add", vm, "--nics", String(n)]);
      t.case(`${round}: add ${vm}`, [exitIs(r, 0, `add ${vm}`)]);
      if (r.code === 0) {
        const nics = JSON.parse(r.stdout) as NicJson[];
        want[vm] = {
          indices: nics.map((x) => x.index),
          identity: nicIdentity(nics),
        };
      }
    }
    const prep = await env.cli(["prepare", "r3"]); // a VM without NICs
    t.case(`${round}: prepare r3`, [exitIs(prep, 0, "prepare r3")]);
    const db = join(env.rootDir, "vmnic.db");
    if (round === "truncate") {
      await Deno.truncate(db, 0);
    } else {
      for (const f of [db, `${db}-wal`, `${db}-shm`]) {
        await Deno.remove(f).catch(() => {});
      }
    }
    const before = await hostState(env);
    for (const args of REFUSED) {
      const r = await env.cli(args);
      const after = await hostState(env);
      t.case(`${round}: ${args.join(" ")} refuses and changes nothing`, [
        ...recordsLost(r, args.join(" ")),
        after === before ? null : `changed:\n${before}\n→\n${after}`,
      ]);
    }
    if (round === "give up") {
      // The documented way of giving the VMs up: their netns go (without
      // CNI DEL: the leases stay), then the backups go by hand.
      const gc = await env.cli(["gc", "--include-unknown", "--active", ""]);
      const report = gc.code === 0
        ? JSON.parse(gc.stdout) as { collected: string[]; warnings: unknown[] }
        : { collected: [], warnings: [] };
      t.case("give up: gc --include-unknown --active '' removes the netns", [
        exitIs(gc, 0, "gc --include-unknown"),
        ["r1", "r2", "r3"].every((vm) => report.collected.includes(vm))
          ? null
          : `not collected: ${gc.stdout}`,
        (await prefixedNetns(env)).length
          ? `netns left: ${await prefixedNetns(env)}`
          : null,
        /lease/i.test(JSON.stringify(report.warnings))
          ? null
          : `no warning that leases stay: ${gc.stdout}`,
      ]);
      await Deno.remove(join(env.rootDir, "records"), { recursive: true });
      // What the docs say stays: the leases. The operator releases them.
      for (const f of await leaseFiles(env.ipamDir)) {
        await Deno.remove(join(env.ipamDir, f));
      }
      const l = await env.cli(["list"]);
      const add = await env.cli(["add", "r9"]);
      t.case("give up: the install works afresh", [
        exitIs(l, 0, "list"),
        l.code === 0 && l.stdout.trim() === "[]" ? null : `list: ${l.stdout}`,
        exitIs(add, 0, "add r9"),
        ...(await checkWhole(env, "r9", { indices: [0] })).problems,
      ]);
      const d = await env.cli(["delete", "r9"]);
      t.case("give up: delete r9", [exitIs(d, 0, "delete r9")]);
      t.leaked(round, await env.leaks());
      continue;
    }
    const rest = await env.cli(["restore-records"]);
    const restored = rest.code === 0
      ? (JSON.parse(rest.stdout) as { restored: string[] }).restored
      : [];
    t.case(`${round}: restore-records brings every VM back`, [
      exitIs(rest, 0, "restore-records"),
      ["r1", "r2", "r3"].every((vm) => restored.includes(vm))
        ? null
        : `restored: ${rest.stdout}`,
    ]);
    for (const vm of ["r1", "r2"]) {
      t.case(
        `${round}: ${vm} as it was (ids, MACs, IPs), verify ok`,
        (await checkWhole(env, vm, want[vm] ?? { indices: [] })).problems,
      );
    }
    const vms = await env.cli(["vms"]);
    t.case(`${round}: r3 (no NICs) is back`, [
      vms.code === 0 && vms.stdout.includes('"r3"') ? null : describe(vms),
    ]);
    const d = await env.cli(["delete", "r1", "r2", "r3"]);
    t.case(`${round}: delete leaves nothing`, [
      exitIs(d, 0, "delete"),
      ...await checkGone(env, "r1"),
      ...await checkGone(env, "r2"),
      ...await checkGone(env, "r3"),
    ]);
    t.leaked(round, await env.leaks());
  }
}

// ------------------------------------------------------------- full disk

/** An executable hook that fills a dir on afterAdd. */
function fillHook(dir: string): string {
  return `#!/bin/sh
# vmnic-events: afterAdd
cat >/dev/null
dd if=/dev/zero of=${dir}/filler-hook bs=4096 2>/dev/null
exit 0
`;
}

/** Fills `dir` to the last block. */
async function fillUp(dir: string, name = "filler"): Promise<void> {
  await run("dd", ["if=/dev/zero", `of=${join(dir, name)}`, "bs=4096"]);
}

async function freeUp(dir: string): Promise<void> {
  for await (const e of Deno.readDir(dir)) {
    if (e.name.startsWith("filler")) await Deno.remove(join(dir, e.name));
  }
}

/** Says what a full-disk add gave (for the report). */
function note(what: string, r: CliRun): void {
  const e = jsonError(r);
  console.log(
    `${what}: exit ${r.code}${
      e ? ` ${e.type}: ${e.message.slice(0, 300)}` : ""
    }`,
  );
}

/** The error must name the full disk, never a follow-on SQLite error. */
function realCause(r: CliRun, what: string): string[] {
  const text = `${jsonError(r)?.message ?? ""} ${r.stdout}`;
  return [
    /No space left|ENOSPC|database or disk is full|disk is full/i.test(text)
      ? null
      : `${what}: the error does not name the full disk: ${text}`,
    /cannot rollback|no transaction is active/i.test(text)
      ? `${what}: a follow-on error hides the cause: ${text}`
      : null,
  ].filter((p): p is string => p !== null);
}

/** Host veths on the env's bridge. */
async function bridgePorts(env: TestEnv): Promise<string[]> {
  return (await ipJson("link")).filter((l) =>
    l.master === env.bridge && l.ifname !== env.bridge
  ).map((l) => String(l.ifname)).sort();
}

/**
 * Nothing of the VM on the kernel or in IPAM (its records may stay): no
 * netns, no veth on the bridge but those of `others`, no lease.
 */
async function rolledBack(
  env: TestEnv,
  vm: string,
  others: string[],
): Promise<string[]> {
  const problems: string[] = [];
  if ((await prefixedNetns(env)).includes(env.prefix + vm)) {
    problems.push(`netns of ${vm} left`);
  }
  const ports = (await bridgePorts(env)).filter((p) => !others.includes(p));
  if (ports.length) {
    problems.push(`veths left on the bridge: ${ports}`);
  }
  const leases = await leasesOf(env, vm);
  if (leases.length) problems.push(`leases of ${vm} left: ${leases}`);
  return problems;
}

async function fullDisk(t: Tally, mnt: string): Promise<void> {
  const env = await makeEnv("rfd", {
    subnet: `10.231.${1 + randomBelow(250)}.0/24`,
    rootDir: join(mnt, "root"),
    fakePlugins: { "vmnict-fill": passPlugin() },
  });
  try {
    await Deno.writeTextFile(
      join(env.cniConfDir, "20-fill.conflist"),
      JSON.stringify({
        cniVersion: "1.0.0",
        name: "fill",
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
          { type: "vmnict-fill", fillDir: mnt },
        ],
      }),
    );
    // A VM first: the install exists, the bridge is made.
    const a = await env.cli(["add", "keep"]);
    t.case("full disk: add keep", [exitIs(a, 0, "add keep")]);
    const keepId = a.code === 0 ? nicIdentity(JSON.parse(a.stdout)) : "";
    const keepPorts = await bridgePorts(env);

    // (a) full before the add: its first write fails, nothing is made.
    for (const recovery of ["delete", "gc"]) {
      await fillUp(mnt);
      const r = await env.cli(["add", "fa", "--nics", "2"]);
      note("(a) add on a full disk", r);
      t.case(`(a) disk full before add: refused (${recovery})`, [
        r.code === 0 ? `add succeeded on a full disk` : null,
        ...realCause(r, "add"),
        ...await rolledBack(env, "fa", keepPorts),
      ]);
      await freeUp(mnt);
      const out = recovery === "delete"
        ? await env.cli(["delete", "fa"])
        : await env.cli(["gc", "--active", "keep"]);
      t.case(`(a) after freeing space, ${recovery} leaves nothing`, [
        exitIs(out, 0, recovery),
        ...await checkGone(env, "fa"),
      ]);
    }

    // (b) full right after CNI ADD (a plugin in the chain fills it).
    for (const recovery of ["delete", "gc"]) {
      const r = await env.cli([
        "add",
        "fb",
        "--nics",
        "2",
        "--network",
        "fill",
      ]);
      note("(b) add, disk filled after CNI ADD", r);
      t.case(
        `(b) disk full after CNI ADD: add fails, rolled back (${recovery})`,
        [
          r.code === 0 ? `add succeeded on a full disk` : null,
          ...realCause(r, "add"),
          ...await rolledBack(env, "fb", keepPorts),
        ],
      );
      await freeUp(mnt);
      const out = recovery === "delete"
        ? await env.cli(["delete", "fb"])
        : await env.cli(["gc", "--active", "keep"]);
      t.case(`(b) after freeing space, ${recovery} leaves nothing`, [
        exitIs(out, 0, recovery),
        ...await checkGone(env, "fb"),
      ]);
    }

    // (c) full from an afterAdd hook: the writes after the NICs fail.
    await Deno.mkdir(env.hooksDir, { mode: 0o755 });
    await Deno.writeTextFile(join(env.hooksDir, "50-fill"), fillHook(mnt), {
      mode: 0o755,
    });
    for (const recovery of ["delete", "gc"]) {
      const r = await env.cli(["add", "fc", "--nics", "2"]);
      note("(c) add, disk filled by afterAdd", r);
      // The writes after the hooks may still fit (SQLite's WAL can have
      // room left in pages it holds): then the add must be whole; else the
      // same as above.
      const failed = r.code !== 0;
      t.case(`(c) disk full from afterAdd (${recovery})`, [
        ...(failed
          ? [...realCause(r, "add"), ...await rolledBack(env, "fc", keepPorts)]
          : (await checkWhole(env, "fc", { indices: [0, 1] })).problems),
      ]);
      await freeUp(mnt);
      const out = recovery === "delete"
        ? await env.cli(["delete", "fc"])
        : await env.cli(["gc", "--active", "keep"]);
      t.case(`(c) after freeing space, ${recovery} leaves nothing`, [
        exitIs(out, 0, recovery),
        ...await checkGone(env, "fc"),
      ]);
    }
    await Deno.remove(join(env.hooksDir, "50-fill"));
    t.case(
      "full disk: the VM that was there is untouched",
      (await checkWhole(env, "keep", { indices: [0], identity: keepId }))
        .problems,
    );
    const d = await env.cli(["delete", "keep"]);
    t.case("full disk: delete keep", [exitIs(d, 0, "delete keep")]);
    t.leaked("full disk", await env.leaks());
  } finally {
    await freeUp(mnt).catch(() => {});
    t.leaked("full disk cleanup", await env.cleanup());
  }
}

rootTest(
  "records: a lost database and a full disk never lose the truth",
  async () => {
    const t = new Tally();
    const env = await makeEnv("rrc", {
      subnet: `10.231.${1 + randomBelow(250)}.0/24`,
    });
    const mnt = await Deno.makeTempDir({ prefix: "vmnic-rel-tmpfs-" });
    let mounted = false;
    try {
      await lostDatabase(t, env);
      await sh(
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=512k,mode=0700",
        "tmpfs",
        mnt,
      );
      mounted = true;
      await fullDisk(t, mnt);
    } finally {
      if (mounted) {
        const u = await run("umount", [mnt]);
        if (u.code !== 0) {
          t.leaked("umount", [`${mnt}: ${u.stderr.trim()}`]);
          await run("umount", ["-l", mnt]);
        }
      }
      await Deno.remove(mnt, { recursive: true }).catch(() => {});
      t.print("records");
      t.leaked("cleanup", await env.cleanup());
    }
    assert.deepEqual(t.failures, []);
    assert.deepEqual(t.leaks, []);
  },
);
