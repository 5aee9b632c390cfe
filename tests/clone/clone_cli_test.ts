/**
 * Clone NICs through the CLI, with real CNI plugins and the real kernel
 * (docs/clones.md): both identities recorded and shown, hooks told both,
 * `verify` checking the translation (nft rules, routes, forwarding, proxy
 * ARP), `recover` mending it, quiesce/unquiesce keeping it, `remove` and
 * `delete` leaving nothing (no TAP, nft table, rule, route, lease,
 * record); bad input changing nothing; a failed clone add rolled back.
 *
 * iproute2, nft and sysctl (through nsenter) are the oracles.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type Fixture,
  linksOf,
  makeFixture,
  vethsOnBridge,
} from "../provider/_fixture.ts";
import { claimPath } from "../../src/provider/ownership.ts";
import { resolveConfig } from "../../src/provider/config.ts";
import type {
  NicConfig,
  RecoverResult,
  VerifyResult,
} from "../../src/provider/types.ts";
import type { HookContext } from "../../src/hooks/types.ts";
import {
  CLONE_RULE_PRIORITY_BASE,
  CLONE_TABLE_BASE,
} from "../../src/wiring/clone_path.ts";
import { ipJson, rootTest, run, sh } from "../support/harness.ts";
import { readLines, writeScript } from "../hooks/hook_fixtures.ts";
import { schemaProblems } from "../server/_schema.ts";
import {
  at,
  curl,
  killDaemons,
  socketDir,
  startDaemon,
} from "../server/_daemon.ts";
import { nicConfig, verifyResult } from "../../src/cli/schemas.ts";

/** Second octet of this file's test subnets (10.247.x.0/24). */
const OCTET = 247;

/** A fixture with a 0755 hooks dir; everything removed afterwards. */
async function withFixture(
  tag: string,
  fn: (fx: Fixture) => Promise<void>,
): Promise<void> {
  const fx = await makeFixture(tag, { octet: OCTET });
  try {
    await Deno.mkdir(fx.hooksDir);
    await Deno.chmod(fx.hooksDir, 0o755);
    await fn(fx);
  } finally {
    await Deno.remove(fx.hooksDir, { recursive: true }).catch(() => {});
    await fx.cleanup();
  }
}

/** A command inside the netns (the oracle's view of it). */
function inNs(fx: Fixture, vm: string, cmd: string, ...args: string[]) {
  return sh(
    "nsenter",
    `--net=/var/run/netns/${fx.prefix}${vm}`,
    "--",
    cmd,
    ...args,
  );
}

/** nft tables of the netns, as `family name`. */
async function nftTables(fx: Fixture, vm: string): Promise<string[]> {
  const out = await inNs(fx, vm, "nft", "-j", "list", "tables");
  const doc = JSON.parse(out) as {
    nftables: { table?: { family: string; name: string } }[];
  };
  return doc.nftables.filter((o) => o.table).map((o) =>
    `${o.table!.family} ${o.table!.name}`
  ).sort();
}

/** `net.ipv4.ip_forward` of the netns. */
async function forwarding(fx: Fixture, vm: string): Promise<string> {
  return (await inNs(fx, vm, "sysctl", "-n", "net.ipv4.ip_forward")).trim();
}

/**
 * `net.ipv4.ip_forward` of a netns nobody touched: a new netns inherits the
 * host's (the initial netns's), which is 1 on many hosts, whatever vmnic does.
 */
async function untouchedForwarding(fx: Fixture): Promise<string> {
  const ns = `${fx.prefix}untouched`;
  await sh("ip", "netns", "add", ns);
  try {
    return (await sh(
      "ip",
      "netns",
      "exec",
      ns,
      "sysctl",
      "-n",
      "net.ipv4.ip_forward",
    )).trim();
  } finally {
    await sh("ip", "netns", "del", ns);
  }
}

/** Policy rules of the netns with vmnic's clone preferences. */
async function cloneRules(fx: Fixture, vm: string): Promise<number[]> {
  const rules = await ipJson<{ priority: number }>(
    "-n",
    `${fx.prefix}${vm}`,
    "rule",
  );
  return rules.map((r) => r.priority).filter((p) =>
    p >= CLONE_RULE_PRIORITY_BASE && p < CLONE_RULE_PRIORITY_BASE + 32
  );
}

/** Routes of one table of the netns. */
async function tableRoutes(
  fx: Fixture,
  vm: string,
  table: number,
): Promise<string[]> {
  const routes = await ipJson<{ dst: string; gateway?: string }>(
    "-n",
    `${fx.prefix}${vm}`,
    "route",
    "show",
    "table",
    String(table),
  );
  return routes.map((r) => `${r.dst}${r.gateway ? ` via ${r.gateway}` : ""}`);
}

/** Lines `<event> <json>` a recording hook wrote, parsed. */
async function recorded(
  log: string,
): Promise<{ event: string; ctx: HookContext }[]> {
  return (await readLines(log)).map((line) => {
    const space = line.indexOf(" ");
    return {
      event: line.slice(0, space),
      ctx: JSON.parse(line.slice(space + 1)),
    };
  });
}

rootTest(
  "clone NIC: both identities recorded, listed and told to hooks; verify checks the translation; recover mends it; remove and delete leave nothing",
  () =>
    withFixture("cc", async (fx) => {
      const log = join(fx.dir, "hooks.log");
      await writeScript(
        fx.hooksDir,
        "50-record",
        `printf '%s %s\\n' "$1" "$(cat)" >> ${log}`,
      );
      const [src] = await fx.cliOk<NicConfig[]>(["add", "src"]);
      const [c1] = await fx.cliOk<NicConfig[]>([
        "add",
        "c1",
        "--clone-of",
        "src",
      ]);

      // Records: the network's identity and the guest's, side by side.
      assert.notEqual(c1.mac, src.mac);
      assert.notEqual(c1.ips[0].address, src.ips[0].address);
      assert.deepEqual(c1.guest, {
        mac: src.mac,
        ips: src.ips,
        routes: src.routes,
        cloneOf: "src",
      });
      assert.deepEqual(schemaProblems(nicConfig, c1), []);
      assert.deepEqual(await fx.cliOk(["inspect", c1.id]), c1);
      // Traced and recorded like any add.
      const events = await fx.cliOk<
        { op: string; outcome: string; phases: { name: string }[] }[]
      >(["events", "--vm", "c1", "--op", "add"]);
      assert.equal(events.length, 1);
      assert.equal(events[0].outcome, "ok");
      assert.ok(events[0].phases.some((p) => p.name === "netlink"));
      assert.deepEqual(await fx.cliOk(["list", "--vm", "c1"]), [c1]);
      const table = await fx.cli(["list"], { json: false });
      assert.match(table.stdout, /GUEST/);
      assert.ok(
        table.stdout.includes(`${src.mac} ${src.ips[0].address}/`),
        table.stdout,
      );

      // Hooks: before and after the add, both identities.
      const calls = (await recorded(log)).filter((c) => c.ctx.vmId === "c1");
      assert.deepEqual(calls.map((c) => c.event), ["beforeAdd", "afterAdd"]);
      for (const c of calls) {
        assert.equal(c.ctx.guest?.mac, src.mac);
        assert.equal(c.ctx.guest?.ips[0].address, src.ips[0].address);
        assert.equal(c.ctx.guest?.cloneOf, "src");
      }
      assert.equal(calls[1].ctx.mac, c1.mac);
      assert.equal(calls[1].ctx.ips?.[0].address, c1.ips[0].address);

      // The kernel: no redirect, the translation in the clone's netns only.
      assert.deepEqual(await nftTables(fx, "c1"), [
        "ip vmnic_tap0",
        "netdev vmnic_tap0",
      ]);
      assert.deepEqual(await nftTables(fx, "src"), []);
      assert.equal(await forwarding(fx, "c1"), "1");
      // A plain VM's netns keeps what the kernel gave it.
      assert.equal(await forwarding(fx, "src"), await untouchedForwarding(fx));
      assert.deepEqual(await cloneRules(fx, "c1"), [CLONE_RULE_PRIORITY_BASE]);
      const gw = c1.ips[0].gateway;
      assert.ok(
        (await tableRoutes(fx, "c1", CLONE_TABLE_BASE)).includes(
          `default via ${gw}`,
        ),
      );
      const ruleset = await inNs(
        fx,
        "c1",
        "nft",
        "list",
        "table",
        "ip",
        "vmnic_tap0",
      );
      assert.match(
        ruleset,
        new RegExp(
          `ip daddr ${c1.ips[0].address} dnat to ${src.ips[0].address}`,
        ),
      );
      assert.match(
        ruleset,
        new RegExp(
          `ip saddr ${src.ips[0].address} snat to ${c1.ips[0].address}`,
        ),
      );
      const links = await linksOf(`${fx.prefix}c1`);
      const veth = (await ipJson<{ addr_info: { local: string }[] }>(
        "-n",
        `${fx.prefix}c1`,
        "addr",
        "show",
        "eth0",
      ))[0];
      assert.ok(
        veth.addr_info.some((a) => a.local === c1.ips[0].address),
        "the veth keeps the clone's CNI address",
      );
      assert.ok(links.has("tap0"));

      // verify: the translation counts; a missing part is reported.
      let v = await fx.cliOk<VerifyResult>(["verify", "c1"]);
      assert.ok(v.ok, v.problems.join("; "));
      assert.equal(v.nics[0].wired, true);
      assert.deepEqual(schemaProblems(verifyResult, v), []);
      await inNs(fx, "c1", "nft", "delete", "table", "ip", "vmnic_tap0");
      let r = await fx.cli(["verify", "c1"]);
      assert.equal(r.code, 1, r.stdout);
      v = JSON.parse(r.stdout);
      assert.equal(v.nics[0].translation?.rules, false);
      assert.match(
        v.problems.join("\n"),
        /translation .* incomplete \(nft rules\)/,
      );

      // recover: mended in place (the TAP kept).
      const tapIndex = links.get("tap0")!.ifindex;
      let rec = await fx.cliOk<RecoverResult>(["recover", "c1"]);
      assert.deepEqual(rec.problems, []);
      assert.match(rec.repaired[0].actions.join("\n"), /nft rules/);
      assert.equal(
        (await linksOf(`${fx.prefix}c1`)).get("tap0")!.ifindex,
        tapIndex,
      );
      assert.ok((await fx.cliOk<VerifyResult>(["verify", "c1"])).ok);

      // A TAP deleted by hand: re-made, with its routes and proxy ARP.
      await sh("ip", "-n", `${fx.prefix}c1`, "link", "del", "tap0");
      r = await fx.cli(["verify", "c1"]);
      assert.equal(r.code, 1);
      rec = await fx.cliOk<RecoverResult>(["recover", "c1"]);
      assert.match(rec.repaired[0].actions.join("\n"), /TAP tap0 re-made/);
      assert.ok((await fx.cliOk<VerifyResult>(["verify", "c1"])).ok);

      // The veth deleted by hand: rebuilt (CNI DEL and ADD, the same IP and
      // MAC, the same guest identity, the TAP kept), its hooks told.
      const tapNow = (await linksOf(`${fx.prefix}c1`)).get("tap0")!.ifindex;
      await sh("ip", "-n", `${fx.prefix}c1`, "link", "del", "eth0");
      rec = await fx.cliOk<RecoverResult>(["recover", "c1"]);
      assert.deepEqual(rec.rebuilt, [0]);
      assert.deepEqual(rec.problems, []);
      assert.equal(rec.nics[0].ips[0].address, c1.ips[0].address);
      assert.equal(rec.nics[0].mac, c1.mac);
      assert.deepEqual(rec.nics[0].guest, c1.guest);
      const told = (await recorded(log)).filter((c) =>
        c.ctx.vmId === "c1" && c.ctx.operation === "recover"
      );
      assert.deepEqual(told.map((c) => c.event), [
        "beforeRemove",
        "beforeAdd",
        "afterRemove",
        "afterAdd",
      ]);
      assert.ok(told.every((c) => c.ctx.guest?.mac === src.mac));
      assert.equal(
        (await linksOf(`${fx.prefix}c1`)).get("tap0")!.ifindex,
        tapNow,
        "the TAP a hypervisor holds is kept",
      );
      v = await fx.cliOk<VerifyResult>(["verify", "c1"]);
      assert.ok(v.ok, v.problems.join("; "));

      // The whole netns gone (a host reboot): made again, the NIC rebuilt.
      await sh("ip", "netns", "del", `${fx.prefix}c1`);
      rec = await fx.cliOk<RecoverResult>(["recover", "c1"]);
      assert.deepEqual(rec.rebuilt, [0]);
      assert.deepEqual(rec.problems, []);
      assert.equal(rec.nics[0].ips[0].address, c1.ips[0].address);
      v = await fx.cliOk<VerifyResult>(["verify", "c1"]);
      assert.ok(v.ok, v.problems.join("; "));
      assert.equal(await forwarding(fx, "c1"), "1");

      // quiesce takes the veth (and its routes) down; unquiesce brings both.
      await fx.cliOk(["quiesce", "c1"]);
      assert.ok((await fx.cliOk<VerifyResult>(["verify", "c1"])).ok);
      await fx.cliOk(["unquiesce", "c1"]);
      v = await fx.cliOk<VerifyResult>(["verify", "c1"]);
      assert.ok(v.ok, v.problems.join("; "));
      assert.ok(
        (await tableRoutes(fx, "c1", CLONE_TABLE_BASE)).includes(
          `default via ${gw}`,
        ),
      );

      // remove: the NIC's translation goes with it; forwarding off again.
      await fx.cliOk(["remove", "c1", "0"]);
      assert.deepEqual(await nftTables(fx, "c1"), []);
      assert.deepEqual(await cloneRules(fx, "c1"), []);
      assert.deepEqual(await tableRoutes(fx, "c1", CLONE_TABLE_BASE), []);
      assert.equal(await forwarding(fx, "c1"), "0");
      const left = await linksOf(`${fx.prefix}c1`);
      assert.ok(!left.has("tap0") && !left.has("eth0"), "TAP and veth gone");
      assert.deepEqual(await fx.leasedIps(), [src.ips[0].address]);
      const removed = (await recorded(log)).filter((c) =>
        c.ctx.vmId === "c1" && c.event === "afterRemove" &&
        c.ctx.operation === "remove"
      );
      assert.equal(removed.length, 1);
      assert.equal(removed[0].ctx.guest?.mac, src.mac);

      // A hot-added clone NIC beside... then delete leaves nothing.
      await fx.cliOk(["add", "c1", "--clone-of", "src"]);
      assert.deepEqual(await fx.cliOk(["delete", "src", "c1"]), {
        deleted: ["src", "c1"],
        errors: [],
        warnings: [],
      });
      assert.deepEqual(await fx.netns(), []);
      assert.deepEqual(await fx.cliOk(["list"]), []);
      assert.deepEqual(await fx.leasedIps(), []);
      assert.deepEqual(await vethsOnBridge(fx.bridge), []);
    }),
);

rootTest(
  "clone NIC with an explicit identity (--guest-mac/--guest-ip/--guest-gateway; and the library's cloneOf): a retry with the same identity returns it, another is a conflict",
  () =>
    withFixture("ce", async (fx) => {
      const [base] = fx.subnet.split("/");
      const net = base.split(".").slice(0, 3).join(".");
      const identity = [
        "--guest-mac",
        "0a:58:0a:00:00:42",
        "--guest-ip",
        `${net}.200/24`,
        "--guest-gateway",
        `${net}.1`,
      ];
      const [nic] = await fx.cliOk<NicConfig[]>([
        "add",
        "x1",
        "--index",
        "0",
        ...identity,
      ]);
      assert.deepEqual(nic.guest, {
        mac: "0a:58:0a:00:00:42",
        ips: [{
          address: `${net}.200`,
          prefix: 24,
          gateway: `${net}.1`,
          version: 4,
        }],
        routes: [{ dst: "0.0.0.0/0", gw: `${net}.1` }],
      });
      // Retried: unchanged; a plain retry too.
      assert.deepEqual(
        await fx.cliOk(["add", "x1", "--index", "0", ...identity]),
        [nic],
      );
      assert.deepEqual(await fx.cliOk(["add", "x1"]), [nic]);
      // Another identity for the same NIC: a conflict, nothing changed.
      const r = await fx.cli([
        "add",
        "x1",
        "--index",
        "0",
        "--guest-mac",
        "0a:58:0a:00:00:43",
        "--guest-ip",
        `${net}.200/24`,
      ]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(JSON.parse(r.stderr).error.type, "ConflictError");
      assert.deepEqual(await fx.cliOk(["list", "--vm", "x1"]), [nic]);
      // A plain NIC does not become a clone NIC by a retry.
      await fx.cliOk(["add", "p1"]);
      const p = await fx.cli(["add", "p1", "--index", "0", ...identity]);
      assert.equal(p.code, 2, p.stderr);

      // The library: cloneOf in the VM config, hv-args with the guest's MAC.
      const provider = await fx.provider();
      try {
        const [lib] = await provider.add("x2", { cloneOf: "x1" });
        assert.equal(lib.guest?.mac, "0a:58:0a:00:00:42");
        assert.equal(lib.guest?.cloneOf, "x1");
        const hv = await provider.hvArgs("x2", "qemu");
        assert.ok(hv.args.some((a) => a.includes("mac=0a:58:0a:00:00:42")));
        const [cfg] = await provider.guestConfig("x2", "cmdline");
        assert.match(cfg.content, new RegExp(`^ip=${net}\\.200::${net}\\.1:`));
      } finally {
        provider.close();
      }
      assert.deepEqual(
        (await fx.cliOk<{ deleted: string[] }>(["delete", "x1", "x2", "p1"]))
          .deleted,
        ["x1", "x2", "p1"],
      );
      assert.deepEqual(await fx.netns(), []);
      assert.deepEqual(await fx.leasedIps(), []);
    }),
);

rootTest(
  "clone add bad input: --clone-of an unknown VM is not found (exit 3), a conflicting or invalid identity exit 2; nothing changed, not even a claim",
  () =>
    withFixture("cb", async (fx) => {
      const claim = claimPath(resolveConfig(fx.config).netnsDir, fx.prefix);
      const exists = async (p: string) =>
        await Deno.stat(p).then(() => true, () => false);
      // The first operation here is refused: not even the prefix claim.
      let r = await fx.cli(["add", "c1", "--clone-of", "nope"]);
      assert.equal(r.code, 3, r.stderr);
      assert.equal(JSON.parse(r.stderr).error.type, "NotFoundError");
      assert.match(JSON.parse(r.stderr).error.reason, /no VM nope/);
      assert.equal(await exists(claim), false, "no prefix claim");
      assert.deepEqual(await fx.netns(), []);

      const [src] = await fx.cliOk<NicConfig[]>(["add", "src"]);
      const before = {
        vms: await fx.cliOk(["vms"]),
        netns: await fx.netns(),
        leases: await fx.leasedIps(),
      };
      const cases: [string[], number, RegExp][] = [
        [["--clone-of", "nope"], 3, /no VM nope/],
        [["--clone-of", "src", "--index", "3"], 3, /has no NIC 3/],
        [
          [
            "--clone-of",
            "src",
            "--index",
            "0",
            "--guest-mac",
            "0a:58:00:00:00:99",
          ],
          2,
          /contradicts --clone-of src/,
        ],
        [
          ["--clone-of", "src", "--index", "0", "--guest-ip", "10.9.9.9/24"],
          2,
          /contradicts --clone-of src/,
        ],
        [["--clone-of", "c1"], 2, /clone of itself/],
        [["--index", "0", "--guest-ip", "10.9.9.9/24"], 2, /needs --guest-mac/],
        [
          [
            "--index",
            "0",
            "--guest-mac",
            "0a:58:00:00:00:99",
            "--guest-ip",
            "fd00::5/64",
          ],
          2,
          /IPv4 only/,
        ],
        [
          [
            "--index",
            "0",
            "--guest-mac",
            "0a:58:00:00:00:99",
            "--guest-ip",
            "10.9.9.9",
          ],
          2,
          /no prefix/,
        ],
        [
          [
            "--index",
            "0",
            "--guest-mac",
            "0a:58:00:00:00:99",
            "--guest-ip",
            "10.9.9.9/24",
            "--guest-gateway",
            "10.9.8.1",
          ],
          2,
          /outside the guest's subnet/,
        ],
        [["--guest-mac", "0a:58:00:00:00:99"], 2, /need --index/],
        [
          [
            "--index",
            "0",
            "--guest-mac",
            "01:00:00:00:00:01",
            "--guest-ip",
            "10.9.9.9/24",
          ],
          2,
          /multicast/,
        ],
      ];
      for (const [args, code, says] of cases) {
        r = await fx.cli(["add", "c1", ...args]);
        assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
        const err = JSON.parse(r.stderr).error;
        assert.match(err.message, says, args.join(" "));
        assert.deepEqual(await fx.cliOk(["vms"]), before.vms, args.join(" "));
        assert.deepEqual(await fx.netns(), before.netns, args.join(" "));
        assert.deepEqual(await fx.leasedIps(), before.leases, args.join(" "));
      }
      assert.equal(src.state, "active");
    }),
);

rootTest(
  "a clone NIC whose add fails after it is plumbed (afterAdd fails) is rolled back: no TAP, nft table, rule, route or lease left, forwarding off",
  () =>
    withFixture("cr", async (fx) => {
      const [plain] = await fx.cliOk<NicConfig[]>(["add", "mix"]);
      // Fails afterAdd for NIC 1 only.
      await writeScript(
        fx.hooksDir,
        "50-fail",
        `[ "$1" = afterAdd ] && grep -q '"index":1' && exit 1; exit 0`,
      );
      const [net] = [fx.subnet.split(".").slice(0, 3).join(".")];
      const r = await fx.cli([
        "add",
        "mix",
        "--index",
        "1",
        "--guest-mac",
        "0a:58:0a:00:00:44",
        "--guest-ip",
        `${net}.201/24`,
      ]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(JSON.parse(r.stderr).error.reason, /rolled back/);
      assert.deepEqual(await nftTables(fx, "mix"), []);
      assert.deepEqual(await cloneRules(fx, "mix"), []);
      assert.deepEqual(await tableRoutes(fx, "mix", CLONE_TABLE_BASE + 1), []);
      assert.equal(await forwarding(fx, "mix"), "0");
      const links = await linksOf(`${fx.prefix}mix`);
      assert.ok(!links.has("tap1") && !links.has("eth1"));
      assert.deepEqual(await fx.leasedIps(), [plain.ips[0].address]);
      assert.deepEqual(await fx.cliOk(["list", "--vm", "mix"]), [plain]);
      assert.ok((await fx.cliOk<VerifyResult>(["verify", "mix"])).ok);
      await run("true", []);
    }),
);

rootTest(
  "clone NICs through the API (vmnic serve): POST cloneOf and an explicit identity, the same answers and exit codes; gc collects a clone like any VM",
  async () => {
    const fx = await makeFixture("ca", { octet: OCTET });
    const dir = await socketDir();
    try {
      const socket = at(dir, "vmnic.sock");
      await startDaemon(fx, { socket });
      let r = await curl(socket, "POST", "/v1/vms/src/nics", { body: {} });
      assert.equal(r.status, 200, r.text);
      const [src] = r.json as NicConfig[];
      r = await curl(socket, "POST", "/v1/vms/c1/nics", {
        body: { cloneOf: "src" },
      });
      assert.equal(r.status, 200, r.text);
      const [c1] = r.json as NicConfig[];
      assert.deepEqual(schemaProblems(nicConfig, c1), []);
      assert.equal(c1.guest?.mac, src.mac);
      assert.equal(c1.guest?.cloneOf, "src");
      r = await curl(socket, "POST", "/v1/vms/c2/nics", {
        body: { cloneOf: "nope" },
      });
      assert.equal(r.status, 404, r.text);
      r = await curl(socket, "POST", "/v1/vms/c2/nics", {
        body: { index: 0, guestIp: "10.9.9.9/24" },
      });
      assert.equal(r.status, 400, r.text);
      // The CLI through the daemon: the same NIC, exit 0.
      const viaCli = await fx.cli([
        "--socket",
        socket,
        "add",
        "c1",
        "--clone-of",
        "src",
      ]);
      assert.equal(viaCli.code, 0, viaCli.stderr);
      assert.deepEqual(JSON.parse(viaCli.stdout), [c1]);
      const gc = await fx.cliOk<{ collected: string[] }>([
        "--no-daemon",
        "gc",
        "--active",
        "src",
      ]);
      assert.deepEqual(gc.collected, ["c1"]);
      assert.deepEqual(await fx.netns(), ["src"]);
      assert.deepEqual(await fx.leasedIps(), [src.ips[0].address]);
    } finally {
      await killDaemons();
      await fx.cleanup();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
