/**
 * A NIC's policy through vmnic, with the real bridge and host-local
 * plugins in a throwaway netns: given with `add`'s flags (and the policy
 * file's per-network defaults, and the built-in ones), recorded and shown
 * by inspect/list, in the kernel (`tc` as the oracle), checked by verify,
 * put back by recover, changed live by `vmnic policy` (an event), the same
 * over the library and the API; bad input exits 2 and changes nothing.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type Fixture, makeFixture, runCli } from "../provider/_fixture.ts";
import type { NicConfig, VerifyResult } from "../../src/provider/types.ts";
import type { PolicyResult } from "../../src/provider/policy_op.ts";
import type { EventRecord } from "../../src/store/events.ts";
import { rootTest, sh, tcJson } from "../support/harness.ts";

type Json = Record<string, unknown>;

/** The root qdisc of a device in a netns (`tc -j qdisc show`). */
async function rootQdisc(ns: string, dev: string): Promise<Json | undefined> {
  const qs = await tcJson<Json>("-n", ns, "qdisc", "show", "dev", dev);
  return qs.find((q) => q.root === true);
}

/** The filters on a device's ingress that match traffic. */
async function filterCount(ns: string, dev: string): Promise<number> {
  const fs = await tcJson<Json>(
    "-n",
    ns,
    "filter",
    "show",
    "dev",
    dev,
    "ingress",
  );
  return fs.filter((f) => (f.options as Json | undefined)?.match !== undefined)
    .length;
}

async function withFx(
  tag: string,
  octet: number,
  fn: (fx: Fixture) => Promise<void>,
): Promise<void> {
  const fx = await makeFixture(tag, { octet });
  try {
    await fn(fx);
  } finally {
    await fx.cleanup();
  }
}

rootTest(
  "policy: add's flags are recorded, shown, in the kernel and verified; recover puts back what is taken away",
  async () => {
    await withFx("pol1", 121, async (fx) => {
      const [nic] = await fx.cliOk<NicConfig[]>([
        "add",
        "vm",
        "--rate",
        "100mbit:64kb",
        "--rate-out",
        "20mbit",
        "--egress-deny",
        "10.1.0.0/16,tcp:22",
        "--egress-allow",
        "10.1.2.0/24",
        "--egress-deny",
        "fd00::/8,udp",
        "--isolate",
      ]);
      assert.deepEqual(nic.policy, {
        rateIn: { bitsPerSecond: 100_000_000, burstBytes: 65_536 },
        rateOut: { bitsPerSecond: 20_000_000, burstBytes: 25_000 },
        antiSpoofing: true,
        egress: [
          {
            action: "deny",
            cidr: "10.1.0.0/16",
            protocol: "tcp",
            port: 22,
            source: "call",
          },
          { action: "allow", cidr: "10.1.2.0/24", source: "call" },
          { action: "deny", cidr: "fd00::/8", protocol: "udp", source: "call" },
          { action: "deny", cidr: "169.254.169.254/32", source: "default" },
        ],
        isolate: true,
      });
      const ns = `${fx.prefix}vm`;
      // Toward the guest on the TAP, from it on the veth: tbf, bytes/s.
      const tapRoot = await rootQdisc(ns, "tap0");
      assert.equal(tapRoot?.kind, "tbf");
      assert.equal((tapRoot?.options as Json).rate, 12_500_000);
      const vethRoot = await rootQdisc(ns, "eth0");
      assert.equal(vethRoot?.kind, "tbf");
      assert.equal((vethRoot?.options as Json).rate, 2_500_000);
      assert.ok(await filterCount(ns, "tap0") > 10, "the guest's allow-list");
      // What no filter takes fails the reverse-path check in the netns.
      for (const dev of ["tap0", "eth0"]) {
        assert.match(
          await sh("ip", "-n", ns, "netconf", "show", "dev", dev),
          /rp_filter strict/,
          dev,
        );
      }
      assert.ok(await filterCount(ns, "eth0") > 1, "isolation toward it");

      // inspect and list show it; list's table says it in words.
      assert.deepEqual(
        (await fx.cliOk<NicConfig>(["inspect", nic.id])).policy,
        nic.policy,
      );
      const table = await fx.cli(["list", "--vm", "vm"], { json: false });
      assert.match(
        table.stdout,
        /POLICY[\s\S]*anti-spoofing, isolated, in 100mbit, out 20mbit, 4 egress rules/,
      );
      let v = await fx.cliOk<VerifyResult>(["verify", "vm"]);
      assert.equal(v.ok, true, v.problems.join("\n"));
      assert.equal(v.nics[0].policy, "ok");

      // A rule and a rate limit taken away by hand.
      const prios = (await tcJson<Json>(
        "-n",
        ns,
        "filter",
        "show",
        "dev",
        "tap0",
        "ingress",
      )).map((f) => Number(f.pref));
      await sh(
        "tc",
        "-n",
        ns,
        "filter",
        "del",
        "dev",
        "tap0",
        "ingress",
        "pref",
        String(Math.min(...prios)),
      );
      await sh("tc", "-n", ns, "qdisc", "del", "dev", "eth0", "root");
      const broken = await fx.cli(["verify", "vm"]);
      assert.equal(broken.code, 1);
      v = JSON.parse(broken.stdout) as VerifyResult;
      assert.equal(v.nics[0].policy, "mismatch");
      const text = v.problems.join("\n");
      assert.match(
        text,
        /NIC 0: tap0: policy rule missing: deny 10\.1\.0\.0\/16 tcp port 22/,
      );
      assert.match(text, /NIC 0: eth0: rate limit from the guest missing/);
      const rec = await fx.cliOk<{ repaired: { actions: string[] }[] }>([
        "recover",
        "vm",
      ]);
      assert.match(rec.repaired[0].actions.join("\n"), /with the NIC's policy/);
      v = await fx.cliOk<VerifyResult>(["verify", "vm"]);
      assert.equal(v.ok, true, v.problems.join("\n"));
      assert.equal((await rootQdisc(ns, "eth0"))?.kind, "tbf");
    });
  },
);

rootTest(
  "policy: vmnic policy changes a live NIC in place, records it, is an event; no flags re-applies",
  async () => {
    await withFx("pol2", 122, async (fx) => {
      const [nic] = await fx.cliOk<NicConfig[]>([
        "add",
        "vm",
        "--rate",
        "10mbit",
      ]);
      const ns = `${fx.prefix}vm`;
      const links = async () =>
        JSON.stringify(
          (JSON.parse(await sh("ip", "-n", ns, "-j", "link")) as Json[])
            .map((l) => [l.ifindex, l.ifname]),
        );
      const before = await links();
      let r = await fx.cliOk<PolicyResult>([
        "policy",
        "vm",
        "0",
        "--rate",
        "none",
        "--egress-deny",
        "10.9.0.0/16",
        "--isolate",
        "--allow-spoofing",
      ]);
      assert.equal(r.changed, true);
      assert.deepEqual(r.policy.rateIn, null);
      assert.equal(r.policy.antiSpoofing, false);
      assert.equal(r.policy.isolate, true);
      assert.deepEqual(
        r.policy.egress.map((e) => [e.action, e.cidr, e.source]),
        [
          ["deny", "10.9.0.0/16", "call"],
          ["deny", "169.254.169.254/32", "default"],
        ],
      );
      assert.notEqual((await rootQdisc(ns, "tap0"))?.kind, "tbf");
      assert.equal(await links(), before, "the NIC was not re-added");
      const shown = await fx.cliOk<NicConfig>(["inspect", nic.id]);
      assert.deepEqual(shown.policy, r.policy);
      assert.equal((await fx.cliOk<VerifyResult>(["verify", "vm"])).ok, true);

      // No flags: resolved and applied again, nothing to change.
      r = await fx.cliOk<PolicyResult>(["policy", "vm", "0"]);
      assert.equal(r.changed, false);
      // Back to the defaults.
      r = await fx.cliOk<PolicyResult>([
        "policy",
        "vm",
        "0",
        "--reset",
        "egress",
        "--reset",
        "antiSpoofing",
        "--no-isolate",
      ]);
      assert.equal(r.policy.antiSpoofing, true);
      assert.equal(r.policy.isolate, false);
      assert.deepEqual(r.policy.egress.map((e) => e.source), ["default"]);
      const events = await fx.cliOk<EventRecord[]>([
        "events",
        "--vm",
        "vm",
        "--op",
        "policy",
      ]);
      assert.equal(events.length, 3);
      assert.ok(events.every((e) => e.outcome === "ok" && e.index === 0));

      // A NIC that is not there: not found; a bad value: exit 2, no change.
      const none = await fx.cli(["policy", "vm", "3"]);
      assert.equal(none.code, 3, none.stderr);
      const bad = await fx.cli(["policy", "vm", "0", "--rate", "5 parsecs"]);
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(
        JSON.parse(bad.stderr).error.message,
        /--rate "5 parsecs": .*allowed: NUMBER with a unit/,
      );
      assert.deepEqual(
        (await fx.cliOk<NicConfig>(["inspect", nic.id])).policy,
        r.policy,
      );
    });
  },
);

rootTest(
  "policy: bad input exits 2, names what, where and what is allowed, and makes nothing",
  async () => {
    await withFx("pol3", 123, async (fx) => {
      const cases: [string[], RegExp][] = [
        [
          ["--rate", "10 furlongs"],
          /--rate "10 furlongs": unknown unit "furlongs"; allowed: NUMBER with a unit of bit, kbit/,
        ],
        [["--rate", "10"], /--rate "10": no unit/],
        [["--rate", "1bit"], /rate 1 out of range/],
        [["--rate", "10mbit:100b"], /burst 100 out of range/],
        [["--rate-in", "fast"], /--rate-in "fast": not RATE\[:BURST\]/],
        [["--egress-deny", "10.0.0.1/8"], /has bits set past its \/8 prefix/],
        [["--egress-deny", "10.0.0.0/33"], /prefix must be 0\.\.32/],
        [["--egress-deny", "10.0.0.0/8,tcp:99999"], /port 99999: 1-65535/],
        [
          ["--egress-deny", "10.0.0.0/8,icmp:7"],
          /port 7 needs protocol tcp or udp/,
        ],
        [
          ["--egress-deny", "10.0.0.0/8,gre"],
          /protocol "gre": tcp, udp or icmp/,
        ],
        [
          ["--egress-allow", "10.0.0.0/8", "--egress-deny", "10.0.0.0/8"],
          /conflicting egress rules: allow and deny of the same destination/,
        ],
        [["--port", "80:abc"], /--port "80:abc": not HOSTPORT:GUESTPORT/],
        [
          ["--port", "8080:80", "--port", "8080:81"],
          /host port \*:8080\/tcp mapped twice/,
        ],
        [["--dns-server", "not-an-ip"], /--dns-server "not-an-ip"/],
        [["--cni-bandwidth", "lots"], /--cni-bandwidth "lots"/],
      ];
      for (const [flags, says] of cases) {
        const r = await fx.cli(["add", "vm", ...flags]);
        assert.equal(r.code, 2, `${flags.join(" ")}: ${r.stderr}`);
        assert.match(
          JSON.parse(r.stderr).error.message,
          says,
          flags.join(" "),
        );
      }
      // Two words for one value is an extra argument: bad usage too.
      const two = await fx.cli(["add", "vm", "--rate", "10", "furlongs"]);
      assert.equal(two.code, 2, two.stderr);
      assert.deepEqual(await fx.netns(), [], "no netns");
      assert.deepEqual(await fx.cliOk(["vms"]), [], "no record");
      assert.deepEqual(await fx.leasedIps(), [], "no lease");
    });
  },
);

rootTest(
  "policy: the policy file's defaults per network (and *), under the call's fields; a bad file is refused, naming it",
  async () => {
    await withFx("pol4", 124, async (fx) => {
      const file = join(fx.dir, "policy.json");
      await Deno.writeTextFile(
        file,
        JSON.stringify({
          networks: {
            [fx.network]: {
              rateIn: "30mbit",
              isolate: true,
              egress: [{ action: "deny", cidr: "192.0.2.0/24" }],
            },
            "*": { antiSpoofing: false },
          },
        }),
      );
      const flags = [`--policy-file=${file}`];
      const [a] = await fx.cliOk<NicConfig[]>([...flags, "add", "a"]);
      assert.deepEqual(a.policy?.rateIn, {
        bitsPerSecond: 30_000_000,
        burstBytes: 37_500,
      });
      assert.equal(a.policy?.isolate, true);
      assert.equal(a.policy?.antiSpoofing, true, "* is for other networks");
      assert.deepEqual(a.policy?.egress.map((e) => [e.cidr, e.source]), [
        ["192.0.2.0/24", "network"],
        ["169.254.169.254/32", "default"],
      ]);
      // The call's fields first.
      const [b] = await fx.cliOk<NicConfig[]>([
        ...flags,
        "add",
        "b",
        "--rate-in",
        "none",
        "--egress-allow",
        "192.0.2.7/32",
      ]);
      assert.equal(b.policy?.rateIn, null);
      assert.deepEqual(
        b.policy?.egress.map((e) => [e.action, e.cidr, e.source]),
        [
          ["allow", "192.0.2.7/32", "call"],
          ["deny", "192.0.2.0/24", "network"],
          ["deny", "169.254.169.254/32", "default"],
        ],
      );
      for (
        const [text, says] of [
          ["{", /policy file .*policy\.json: {2}?is not JSON/],
          [
            JSON.stringify({
              networks: { [fx.network]: { rate: "9 furlongs" } },
            }),
            new RegExp(
              `policy file .*: networks\\.${fx.network}\\.rate "9 furlongs": unknown unit "furlongs"; allowed`,
            ),
          ],
          [
            JSON.stringify({
              networks: {
                x: { egress: [{ action: "block", cidr: "10.0.0.0/8" }] },
              },
            }),
            /networks\.x\.egress\[0\]: action "block": allow or deny/,
          ],
          [
            JSON.stringify({ nets: {} }),
            /nets: unknown field; allowed: networks/,
          ],
          [
            JSON.stringify({ networks: { x: { bogus: 1 } } }),
            /networks\.x\.bogus: unknown policy field; allowed: rate/,
          ],
        ] as [string, RegExp][]
      ) {
        await Deno.writeTextFile(file, text);
        const r = await fx.cli([...flags, "add", "c"]);
        assert.equal(r.code, 2, `${text}: ${r.stderr}`);
        assert.match(JSON.parse(r.stderr).error.message, says, text);
      }
      // A path that cannot name a file (under a file) is no "no file": it
      // fails closed, never as a host without defaults.
      const under = `--policy-file=${join(file, "policy.json")}`;
      const r = await fx.cli([under, "add", "c"]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(
        JSON.parse(r.stderr).error.message,
        /policy file .*policy\.json\/policy\.json cannot be read/,
      );
      assert.deepEqual(await fx.netns(), ["a", "b"], "c was not made");
    });
  },
);

rootTest(
  "policy: list --ip and find --ip name the NIC holding an address; the library looks up, adds with a policy, changes it",
  async () => {
    await withFx("pol5", 125, async (fx) => {
      const [a] = await fx.cliOk<NicConfig[]>(["add", "a"]);
      await fx.cliOk(["add", "b"]);
      const ip = a.ips[0].address;
      const listed = await fx.cliOk<NicConfig[]>(["list", "--ip", ip]);
      assert.deepEqual(listed.map((n) => n.id), [a.id]);
      const found = await fx.cliOk<NicConfig[]>(["find", "--ip", ip]);
      assert.deepEqual(found.map((n) => n.id), [a.id]);
      assert.deepEqual(
        await fx.cliOk<NicConfig[]>(["list", "--ip", "10.255.255.254"]),
        [],
      );
      const bad = await fx.cli(["list", "--ip", "10.0.0.0/8"]);
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, /allowed: one IPv4 or IPv6 address/);

      // The library: the same lookup, a policy given as a field, a change.
      const p = await fx.provider();
      try {
        assert.deepEqual((await p.list({ ip })).map((n) => n.id), [a.id]);
        const [c] = await p.add("c", {}, {
          policy: {
            rate: "5mbit",
            egress: [{ action: "deny", cidr: "10.7.0.0/16" }],
          },
        });
        assert.equal(c.policy?.rateOut?.bitsPerSecond, 5_000_000);
        const r = await p.policy("c", 0, { set: { isolate: true } });
        assert.equal(r.policy.isolate, true);
        assert.equal(r.policy.rateIn?.bitsPerSecond, 5_000_000, "kept");
        await assert.rejects(
          () => p.add("d", {}, { policy: { rate: "7 leagues" } }),
          /policy\.rate "7 leagues": unknown unit "leagues"/,
        );
        assert.equal((await p.verify("c")).ok, true);
      } finally {
        p.close();
      }
    });
  },
);

rootTest(
  "policy: anti-spoofing off and nothing else is the plain redirect both ways",
  async () => {
    await withFx("pol6", 126, async (fx) => {
      const [nic] = await fx.cliOk<NicConfig[]>([
        "add",
        "vm",
        "--allow-spoofing",
        "--egress-allow",
        "169.254.169.254/32",
      ]);
      assert.equal(nic.policy?.antiSpoofing, false);
      const ns = `${fx.prefix}vm`;
      // An allow of the metadata address ahead of its deny: two rules, then all.
      assert.equal(await filterCount(ns, "tap0"), 3);
      assert.equal(await filterCount(ns, "eth0"), 1);
      const r = await runCli([
        ...fx.flags,
        "--json",
        "policy",
        "vm",
        "0",
        "--reset",
        "egress",
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(
        await filterCount(ns, "tap0"),
        2,
        "deny metadata, redirect all",
      );
    });
  },
);
