/**
 * The kernel parts of the policy (src/kernel/tc.ts, tc_probe.ts): u32 keys
 * at any alignment, filters with keys and with or without a redirect, the
 * tbf root qdisc, and the feature probe — each checked against iproute2
 * (`tc -j`) in a throwaway named netns, and the probe against the kernel's
 * own config where it has one.
 */
import assert from "node:assert/strict";
import { getLinkByName } from "../../src/kernel/link.ts";
import { withNetns } from "../../src/kernel/netns.ts";
import {
  addIngressQdisc,
  addU32Filter,
  deleteRootQdisc,
  listFilters,
  listQdiscs,
  mergeU32Keys,
  setRootTbf,
  u32Match,
} from "../../src/kernel/tc.ts";
import { probeTcFeatures } from "../../src/kernel/tc_probe.ts";
import { IfEther, PktSched } from "../../src/netlink/constants.ts";
import { NetlinkSocket } from "../../src/netlink/socket.ts";
import { InvalidArgumentError } from "../../src/sys/errors.ts";
import {
  rootTest,
  run,
  sh,
  tcJson,
  uniquePrefix,
  withScratchNetns,
} from "../support/harness.ts";

type Json = Record<string, unknown>;

Deno.test("u32Match: bytes at any alignment become aligned keys", () => {
  // A MAC as the Ethernet source: two keys, the second half-masked.
  assert.deepEqual(
    u32Match(-8, Uint8Array.of(0x0a, 0x58, 1, 2, 3, 4)),
    [
      { off: -8, mask: 0xffffffff, val: 0x0a580102 },
      { off: -4, mask: 0xffff0000, val: 0x03040000 },
    ],
  );
  // ARP sender address at 14: split over the keys at 12 and 16.
  assert.deepEqual(u32Match(14, Uint8Array.of(10, 1, 2, 3)), [
    { off: 12, mask: 0x0000ffff, val: 0x00000a01 },
    { off: 16, mask: 0xffff0000, val: 0x02030000 },
  ]);
  // A /12 prefix: only the masked bits count.
  assert.deepEqual(
    u32Match(16, Uint8Array.of(172, 16, 0, 0), Uint8Array.of(255, 0xf0, 0, 0)),
    [{ off: 16, mask: 0xfff00000, val: 0xac100000 }],
  );
});

Deno.test("mergeU32Keys: keys at one offset join; contradictions are null", () => {
  assert.deepEqual(
    mergeU32Keys([
      { off: 12, mask: 0xffff0000, val: 0x03040000 },
      { off: 12, mask: 0x0000ffff, val: 0x00000a01 },
      { off: 0, mask: 0, val: 0 },
    ]),
    [
      { off: 0, mask: 0, val: 0 },
      { off: 12, mask: 0xffffffff, val: 0x03040a01 },
    ],
  );
  assert.equal(
    mergeU32Keys([
      { off: 4, mask: 0xff000000, val: 0x01000000 },
      { off: 4, mask: 0xff000000, val: 0x02000000 },
    ]),
    null,
  );
});

/** A netns with a veth pair `a`/`b` and a socket in it. */
async function withPair(
  fn: (
    c: { ns: string; sock: NetlinkSocket; a: number; b: number },
  ) => Promise<void> | void,
): Promise<void> {
  const prefix = uniquePrefix("ptc");
  await withScratchNetns(prefix, ["n"], async ([path]) => {
    const ns = `${prefix}n`;
    await sh("ip", "-n", ns, "link", "add", "pa", "type", "veth", "peer", "pb");
    const sock = withNetns(path, () => NetlinkSocket.open());
    try {
      const a = getLinkByName(sock, "pa")!.index;
      const b = getLinkByName(sock, "pb")!.index;
      await fn({ ns, sock, a, b });
    } finally {
      sock.close();
    }
  });
}

rootTest(
  "tc: u32 filters with keys, with and without a redirect, as tc sees them",
  async () => {
    await withPair(async ({ ns, sock, a, b }) => {
      addIngressQdisc(sock, a, { label: "pa" });
      const keys = [
        ...u32Match(-8, Uint8Array.of(0x0a, 0x58, 1, 2, 3, 4)),
        ...u32Match(12, Uint8Array.of(10, 9, 8, 7)),
      ];
      addU32Filter(sock, {
        ifindex: a,
        label: "pa",
        prio: 3,
        protocol: IfEther.ETH_P_IP,
        keys,
        redirectTo: { ifindex: b, label: "pb" },
      });
      addU32Filter(sock, {
        ifindex: a,
        label: "pa",
        prio: 4,
        protocol: IfEther.ETH_P_IP,
        keys: u32Match(16, Uint8Array.of(169, 254, 169, 254)),
      });
      const mine = listFilters(sock, a).sort((x, y) => x.prio - y.prio);
      assert.equal(mine.length, 2);
      assert.deepEqual(mine[0].keys, keys);
      assert.equal(mine[0].protocol, IfEther.ETH_P_IP);
      assert.equal(mine[0].terminal, true);
      assert.equal(mine[0].actions[0].kind, "mirred");
      assert.deepEqual(mine[1].actions, []);
      assert.equal(mine[1].terminal, true);

      // The oracle: both filters, terminal, protocol ip, one redirecting.
      const shown = (await tcJson<Json>(
        "-n",
        ns,
        "filter",
        "show",
        "dev",
        "pa",
        "ingress",
      )).filter((f) => (f.options as Json | undefined)?.match);
      assert.deepEqual(shown.map((f) => [f.pref, f.protocol]), [
        [3, "ip"],
        [4, "ip"],
      ]);
      const text = await sh(
        "tc",
        "-n",
        ns,
        "filter",
        "show",
        "dev",
        "pa",
        "ingress",
      );
      assert.match(text, /match 0a580102\/ffffffff at -8/);
      assert.match(text, /match 03040000\/ffff0000 at -4/);
      assert.match(text, /match 0a090807\/ffffffff at 12/);
      assert.match(text, /match a9fea9fe\/ffffffff at 16/);
      assert.match(text, /Egress Redirect to device pb/);

      assert.throws(
        () =>
          addU32Filter(sock, {
            ifindex: a,
            prio: 5,
            protocol: IfEther.ETH_P_IP,
            keys: [{ off: 2, mask: 0xff, val: 1 }],
          }),
        InvalidArgumentError,
      );
    });
  },
);

rootTest(
  "tc: a tbf root qdisc is set, changed, read back and removed",
  async () => {
    await withPair(async ({ ns, sock, a }) => {
      setRootTbf(sock, a, {
        rate: 12_500_000,
        burst: 65_536,
        limit: 700_000,
        label: "pa",
      });
      const root = () =>
        listQdiscs(sock, a).find((q) => q.parent === PktSched.TC_H_ROOT);
      let q = root();
      assert.equal(q?.kind, "tbf");
      assert.equal(q?.tbf?.rate, 12_500_000);
      assert.equal(q?.tbf?.limit, 700_000);
      assert.ok(
        Math.abs(q!.tbf!.burst - 65_536) < 70,
        `burst ${q?.tbf?.burst}`,
      );
      const shown = (await tcJson<Json>("-n", ns, "qdisc", "show", "dev", "pa"))
        .find((x) => x.kind === "tbf");
      assert.equal((shown?.options as Json).rate, 12_500_000);

      // Changed in place; a rate past 32 bits of bytes goes in TCA_TBF_RATE64.
      setRootTbf(sock, a, {
        rate: 5_000_000_000,
        burst: 1_000_000,
        limit: 2_000_000,
        label: "pa",
      });
      q = root();
      assert.equal(q?.tbf?.rate, 5_000_000_000);
      assert.ok(deleteRootQdisc(sock, a, { label: "pa" }));
      assert.notEqual(root()?.kind, "tbf");
      assert.equal(deleteRootQdisc(sock, a, { ignoreMissing: true }), false);
      assert.throws(
        () => setRootTbf(sock, a, { rate: 0, burst: 1, limit: 1 }),
        InvalidArgumentError,
      );
    });
  },
);

rootTest("tc probe: what this kernel has, as its config says", async () => {
  const f = probeTcFeatures();
  assert.ok(f.ingress && f.u32 && f.mirred, JSON.stringify(f));
  const r = await run("sh", ["-c", "zcat /proc/config.gz"]);
  // Without a config only the required parts are checked.
  if (r.code !== 0) return;
  const built = (opt: string) =>
    new RegExp(`^CONFIG_${opt}=[ym]$`, "m").test(r.stdout);
  assert.equal(f.tbf, built("NET_SCH_TBF"));
  assert.equal(f.htb, built("NET_SCH_HTB"));
  assert.equal(f.gact, built("NET_ACT_GACT"));
  assert.equal(f.police, built("NET_ACT_POLICE"));
  assert.equal(f.flower, built("NET_CLS_FLOWER"));
  assert.equal(f.matchall, built("NET_CLS_MATCHALL"));
});
