/**
 * Never touch what this install did not create (issue #9, item 2). Two
 * installs (different root dirs) on one netns prefix and one network
 * (shared host-local leases): B's `add` is refused with a ConflictError
 * naming A's root dir, and A's netns, lease and veth stay as they are; B
 * pointed at A's prefix after living on its own, with `gc --include-unknown`
 * (also once A's claim file was removed by hand), collects nothing of A's.
 * A netns made by hand with the prefix is never taken over by `add` or
 * `prepare`, never deleted by `gc` without `--include-unknown`; `prepare
 * --adopt` takes it on purpose, and `add` still leaves a device in it
 * that no record accounts for alone.
 */
import { join } from "node:path";
import assert from "node:assert/strict";
import { ipJson, rootTest, run, sh } from "../support/harness.ts";
import {
  type CliRun,
  describe,
  installIdOf,
  jsonError,
  leaseFiles,
  leaseOwner,
  makeEnv,
  nicIdentity,
  prefixedNetns,
  randomBelow,
  runCli,
  type TestEnv,
} from "./_env.ts";
import { checkGone, checkWhole, exitIs, Tally } from "./_checks.ts";

/**
 * Everything of A's VMs another install could touch, as one string: the
 * claim, A's netns, the leases A's container ids hold, the devices in A's
 * netns, their host ends on the bridge, A's records.
 */
async function snapshot(a: TestEnv, vms: string[]): Promise<string> {
  const installId = await installIdOf(a);
  const leases: string[] = [];
  for (const f of await leaseFiles(a.ipamDir)) {
    const owner = await leaseOwner(join(a.ipamDir, f));
    if (owner?.startsWith(`vmnic-${installId}-`)) leases.push(`${f}=${owner}`);
  }
  const host = new Map(
    (await ipJson("link")).map((l) => [l.ifindex, l] as const),
  );
  const inside: string[] = [];
  const ports: string[] = [];
  for (const vm of vms) {
    const links = await ipJson("-n", a.prefix + vm, "link");
    inside.push(
      `${vm}: ${links.map((l) => `${l.ifname}/${l.address}`).sort()}`,
    );
    for (const l of links) {
      if (l.link_index === undefined) continue;
      const peer = host.get(l.link_index);
      ports.push(
        `${vm}/${l.ifname}: ${peer?.ifname ?? "missing"} on ${peer?.master}`,
      );
    }
  }
  const nics: string[] = [];
  for (const vm of vms) {
    const r = await a.cli(["list", "--vm", vm]);
    nics.push(r.code === 0 ? nicIdentity(JSON.parse(r.stdout)) : describe(r));
  }
  let claim = "";
  try {
    claim = JSON.parse(await Deno.readTextFile(a.claimFile)).rootDir;
  } catch (e) {
    claim = String(e);
  }
  return JSON.stringify(
    {
      claim,
      netns: (await prefixedNetns(a)).filter((n) =>
        vms.some((vm) => n === a.prefix + vm)
      ),
      leases,
      ports: ports.sort(),
      inside,
      nics,
    },
    null,
    1,
  );
}

/** A lock file of `vm` in the env's run dir, as a problem. */
async function lockFileOf(env: TestEnv, vm: string): Promise<string | null> {
  try {
    const path = join(env.runDir, "locks", `${vm}.lock`);
    await Deno.lstat(path);
    await Deno.remove(path); // charged to this case only
    return `lock file ${vm}.lock left in ${env.runDir}`;
  } catch {
    return null;
  }
}

/** B's CLI with its settings but another netns prefix. */
function onPrefix(b: TestEnv, prefix: string) {
  const flags = b.flags.map((f) =>
    f.startsWith("--netns-prefix=") ? `--netns-prefix=${prefix}` : f
  );
  return (args: string[]) => runCli([...flags, "--json", ...args]);
}

function conflict(r: CliRun, what: string, names?: string): string[] {
  const e = jsonError(r);
  return [
    exitIs(r, 2, what),
    e?.type === "ConflictError"
      ? null
      : `${what}: not a ConflictError: ${
        e ? `${e.type}: ${e.message}` : describe(r)
      }`,
    !names || e?.message.includes(names)
      ? null
      : `${what}: the error does not name ${names}: ${e?.message}`,
  ].filter((p): p is string => p !== null);
}

rootTest(
  "ownership: an install never touches what it did not make",
  async () => {
    const t = new Tally();
    const a = await makeEnv("row", {
      subnet: `10.233.${1 + randomBelow(250)}.0/24`,
    });
    // B: its own root and run dirs, A's prefix, A's network and leases.
    const b = await makeEnv("rowb", {
      subnet: a.subnet,
      prefix: a.prefix,
      shareNetworkOf: a,
    });
    // C: another root dir with a prefix of its own, later pointed at A's.
    const c = await makeEnv("rowc", { subnet: a.subnet, shareNetworkOf: a });
    const envs = [a, b, c];
    try {
      const added = await a.cli(["add", "vm1", "--nics", "2"]);
      t.case("A adds vm1", [exitIs(added, 0, "A add vm1")]);
      const aRoot = await Deno.realPath(a.rootDir);
      let claim: { rootDir?: string } = {};
      try {
        claim = JSON.parse(await Deno.readTextFile(a.claimFile));
      } catch { /* reported below */ }
      t.case("A's first add claims the prefix", [
        claim.rootDir === aRoot ? null : `claim: ${JSON.stringify(claim)}`,
      ]);
      const aState = await snapshot(a, ["vm1"]);
      const untouched = async (what: string) => {
        const now = await snapshot(a, ["vm1"]);
        return [
          now === aState
            ? null
            : `${what} changed A's state:\n${aState}\n→\n${now}`,
          ...(await checkWhole(a, "vm1", { indices: [0, 1] })).problems,
        ];
      };

      // ---- B on A's prefix: refused, naming A's root dir
      for (const args of [["add", "vm1"], ["add", "vm2"], ["prepare", "vm3"]]) {
        const r = await b.cli(args);
        t.case(`B's ${args.join(" ")} is refused`, [
          ...conflict(r, `B ${args.join(" ")}`, aRoot),
          ...await untouched(`B ${args.join(" ")}`),
          ...(await prefixedNetns(a)).filter((n) =>
            n === a.prefix + "vm2" || n === a.prefix + "vm3"
          ).map((n) => `B made ${n}`),
        ]);
      }
      // Refusals: a conflict (2), unknown (3), or delete's per-VM error (1,
      // "left alone"); never a change to A's VM.
      for (
        const [args, codes] of [
          [["gc", "--active", ""], [0, 2]],
          [["gc", "--active", "", "--include-unknown"], [0, 2]],
          [["delete", "vm1"], [1, 2]],
          [["delete", "--force", "vm1"], [1, 2]],
          [["remove", "vm1", "0"], [2, 3]],
          [["recover", "vm1"], [2, 3]],
          [["verify", "vm1"], [3]],
          [["quiesce", "vm1"], [2, 3]],
        ] as [string[], number[]][]
      ) {
        const r = await b.cli(args);
        t.case(`B's ${args.join(" ")} touches nothing of A's`, [
          codes.includes(r.code) ? null : `B ${args.join(" ")}: ${describe(r)}`,
          r.code === 1 && !/left alone/.test(r.stdout)
            ? `B ${args.join(" ")}: ${r.stdout}`
            : null,
          // Nothing of B's about a VM it has no record of, not even a lock.
          await lockFileOf(b, "vm1"),
          ...await untouched(`B ${args.join(" ")}`),
        ]);
      }

      // ---- a fresh install's refused first add takes no claim
      const fresh = await makeEnv("rowf", {
        subnet: a.subnet,
        shareNetworkOf: a,
      });
      envs.push(fresh);
      const bad = await fresh.cli(["add", "f1", "--network", "nosuch"]);
      let freshClaim = "(none)";
      try {
        freshClaim = await Deno.readTextFile(fresh.claimFile);
      } catch { /* none: right */ }
      t.case("a refused add (unknown network) takes no claim on the prefix", [
        exitIs(bad, 2, "add --network nosuch"),
        freshClaim === "(none)" ? null : `claim made: ${freshClaim}`,
      ]);

      // ---- C lives on its own prefix, then is pointed at A's
      const cAdd = await c.cli(["add", "cvm"]);
      t.case("C adds cvm on its own prefix", [exitIs(cAdd, 0, "C add")]);
      const cOnA = onPrefix(c, a.prefix);
      for (
        const args of [
          ["gc", "--active", "cvm", "--include-unknown"],
          ["gc", "--active", "", "--include-unknown"],
        ]
      ) {
        const r = await cOnA(args);
        t.case(`C on A's prefix: ${args.join(" ")} deletes nothing of A's`, [
          r.code === 0 || r.code === 2 ? null : `C gc: ${describe(r)}`,
          await lockFileOf(c, "vm1"),
          ...await untouched(`C ${args.join(" ")}`),
        ]);
      }
      // Its own records are still its own: cvm was collected by the second
      // gc (nothing kept it), and completely.
      t.case("C's own VM went completely", await checkGone(c, "cvm"));

      // ---- A's claim removed by hand (as if A were retired): the netns tag
      // still keeps A's netns A's, and a refused operation takes no claim.
      const claimText = await Deno.readTextFile(a.claimFile);
      await Deno.remove(a.claimFile);
      try {
        const noClaim = await snapshot(a, ["vm1"]);
        for (
          const [args, codes] of [
            [["add", "vm1"], [2]],
            [["prepare", "vm1"], [2]],
            [["prepare", "--adopt", "vm1"], [2]],
            [["recover", "vm1"], [3]],
            [["gc", "--active", "", "--include-unknown"], [0]],
          ] as [string[], number[]][]
        ) {
          const r = await b.cli(args);
          let claim = "(none)";
          try {
            claim = await Deno.readTextFile(a.claimFile);
            await Deno.remove(a.claimFile);
          } catch { /* none: right */ }
          const now = await snapshot(a, ["vm1"]);
          t.case(
            `without the claim, B's ${args.join(" ")} leaves A's VM alone`,
            [
              codes.includes(r.code)
                ? null
                : `B ${args.join(" ")}: ${describe(r)}`,
              r.code === 2
                ? conflict(r, `B ${args.join(" ")}`).join("; ")
                : null,
              now === noClaim
                ? null
                : `A's state changed:\n${noClaim}\n→\n${now}`,
              // A refused (or empty-handed) operation changes nothing, not even
              // the claim: with B's claim, A would be locked out of its prefix.
              r.code === 0 || claim === "(none)"
                ? null
                : `a refused operation took the claim: ${claim}`,
            ],
          );
        }
      } finally {
        await Deno.writeTextFile(a.claimFile, claimText, { mode: 0o600 });
      }
      t.case("A still works on its prefix", [
        exitIs(await a.cli(["recover", "vm1"]), 0, "A recover"),
        ...await untouched("A recover"),
      ]);

      // ---- netns made by hand with the prefix
      const hand1 = a.prefix + "hand1";
      const hand2 = a.prefix + "hand2";
      const hand3 = a.prefix + "hand3";
      for (const n of [hand1, hand2, hand3]) await sh("ip", "netns", "add", n);
      await sh(
        "ip",
        "-n",
        hand3,
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "peer0",
      );
      const exists = async (n: string) => (await prefixedNetns(a)).includes(n);
      const addHand = await a.cli(["add", "hand1"]);
      t.case("add never takes over a hand-made netns", [
        ...conflict(addHand, "add hand1", "--adopt"),
        (await exists(hand1)) ? null : "hand1 deleted",
        (await ipJson("-n", hand1, "link")).length === 1
          ? null
          : "something was made in hand1",
      ]);
      const prepHand = await a.cli(["prepare", "hand1"]);
      t.case("prepare without --adopt never takes it over", [
        ...conflict(prepHand, "prepare hand1", "--adopt"),
        (await exists(hand1)) ? null : "hand1 deleted",
      ]);
      const gc1 = await a.cli(["gc", "--active", "vm1"]);
      const skipped = gc1.code === 0
        ? (JSON.parse(gc1.stdout) as { skipped: { id: string }[] }).skipped
          .map((s) => s.id)
        : [];
      t.case(
        "gc without --include-unknown leaves hand-made netns, reports them",
        [
          exitIs(gc1, 0, "gc"),
          ["hand1", "hand2", "hand3"].every((h) => skipped.includes(h))
            ? null
            : `not reported skipped: ${gc1.stdout}`,
          (await exists(hand1)) && (await exists(hand2)) &&
            (await exists(hand3))
            ? null
            : "gc deleted a hand-made netns",
          ...await untouched("gc"),
        ],
      );
      const adopt = await a.cli(["prepare", "--adopt", "hand1"]);
      const addAdopted = await a.cli(["add", "hand1", "--nics", "2"]);
      t.case("prepare --adopt takes a hand-made netns; add then works", [
        exitIs(adopt, 0, "prepare --adopt"),
        exitIs(addAdopted, 0, "add hand1"),
        ...(await checkWhole(a, "hand1", { indices: [0, 1] })).problems,
      ]);
      const delAdopted = await a.cli(["delete", "hand1"]);
      t.case("an adopted VM is deleted like any other", [
        exitIs(delAdopted, 0, "delete hand1"),
        ...await checkGone(a, "hand1"),
      ]);
      const adopt3 = await a.cli(["prepare", "--adopt", "hand3"]);
      const add3 = await a.cli(["add", "hand3"]);
      const links3 = await ipJson("-n", hand3, "link");
      t.case("add leaves an eth0 no record accounts for alone", [
        exitIs(adopt3, 0, "prepare --adopt hand3"),
        ...conflict(add3, "add hand3", "eth0"),
        links3.some((l) => l.ifname === "eth0" && l.link_type === "ether")
          ? null
          : `eth0 gone from hand3: ${JSON.stringify(links3)}`,
      ]);
      const del3 = await a.cli(["delete", "hand3"]);
      t.case("the adopted netns with a foreign device is deleted on request", [
        exitIs(del3, 0, "delete hand3"),
        ...await checkGone(a, "hand3"),
      ]);
      const gc2 = await a.cli(["gc", "--active", "vm1", "--include-unknown"]);
      t.case("gc --include-unknown removes a hand-made netns", [
        exitIs(gc2, 0, "gc --include-unknown"),
        (await exists(hand2)) ? "hand2 left" : null,
        ...await untouched("gc --include-unknown"),
      ]);

      const del = await a.cli(["delete", "vm1"]);
      t.case("A deletes vm1", [
        exitIs(del, 0, "A delete"),
        ...await checkGone(a, "vm1"),
      ]);
      for (const e of envs) t.leaked(e.prefix, await e.leaks());
    } finally {
      t.print("ownership");
      for (const n of ["hand1", "hand2", "hand3"]) {
        await run("ip", ["netns", "del", a.prefix + n]);
      }
      for (const e of [...envs].reverse()) {
        t.leaked(
          `cleanup ${e.prefix}`,
          await e.cleanup(),
        );
      }
    }
    assert.deepEqual(t.failures, []);
    assert.deepEqual(t.leaks, []);
  },
);
