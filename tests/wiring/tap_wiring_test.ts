/**
 * src/wiring/tap_wiring.ts against iproute2, in a throwaway named netns
 * holding a veth pair and a TAP, as a VM's netns does.
 */
import assert from "node:assert/strict";
import { getLinkByName } from "../../src/kernel/link.ts";
import { withNetns } from "../../src/kernel/netns.ts";
import { addIngressQdisc, listFilters } from "../../src/kernel/tc.ts";
import { createTap } from "../../src/kernel/tuntap.ts";
import { NetlinkSocket } from "../../src/netlink/socket.ts";
import { KernelError } from "../../src/sys/errors.ts";
import {
  describeWiring,
  unwireTap,
  wireTapToVeth,
  WIRING_PRIO,
} from "../../src/wiring/tap_wiring.ts";
import {
  rootTest,
  sh,
  tcJson,
  uniquePrefix,
  withScratchNetns,
} from "../support/harness.ts";

type Json = Record<string, unknown>;
const pair = { veth: "eth0", tap: "tap0" };

/** A netns with veth `eth0` (peer `peer0`) and TAP `tap0`, and a socket there. */
async function withVmNetns(
  fn: (ctx: { ns: string; path: string; sock: NetlinkSocket }) => unknown,
): Promise<void> {
  const prefix = uniquePrefix("wire");
  await withScratchNetns(prefix, ["vm"], async ([path]) => {
    const ns = `${prefix}vm`;
    await sh(
      "ip",
      "-n",
      ns,
      "link",
      "add",
      "eth0",
      "type",
      "veth",
      "peer",
      "peer0",
    );
    const sock = withNetns(path, () => {
      createTap({ name: "tap0" });
      return NetlinkSocket.open();
    });
    try {
      await fn({ ns, path, sock });
    } finally {
      sock.close();
    }
  });
}

/** The redirect targets `tc` shows on a device's ingress. */
async function redirectTargets(ns: string, dev: string): Promise<string[]> {
  const filters = await tcJson<Json>(
    "-n",
    ns,
    "filter",
    "show",
    "dev",
    dev,
    "ingress",
  );
  return filters.flatMap((f) => {
    const opts = f.options as { actions?: Json[] } | undefined;
    return (opts?.actions ?? [])
      .filter((a) =>
        a.kind === "mirred" && a.mirred_action === "redirect" &&
        a.direction === "egress"
      )
      .map((a) => String(a.to_dev));
  });
}

async function ingressQdiscs(ns: string, dev: string): Promise<Json[]> {
  const all = await tcJson<Json>("-n", ns, "qdisc", "show", "dev", dev);
  return all.filter((q) => q.kind === "ingress" || q.kind === "clsact");
}

rootTest("wiring: veth and tap redirect to each other", async () => {
  await withVmNetns(async ({ ns, sock }) => {
    assert.deepEqual(describeWiring(sock, pair), {
      vethIndex: getLinkByName(sock, "eth0")?.index,
      tapIndex: getLinkByName(sock, "tap0")?.index,
      vethToTap: false,
      tapToVeth: false,
      wired: false,
    });

    assert.deepEqual(wireTapToVeth(sock, pair), { changed: true });
    assert.deepEqual(await redirectTargets(ns, "eth0"), ["tap0"]);
    assert.deepEqual(await redirectTargets(ns, "tap0"), ["eth0"]);
    const state = describeWiring(sock, pair);
    assert.equal(state.vethToTap, true);
    assert.equal(state.tapToVeth, true);
    assert.equal(state.wired, true);

    // Idempotent: nothing added the second time.
    assert.deepEqual(wireTapToVeth(sock, pair), { changed: false });
    assert.deepEqual(await redirectTargets(ns, "eth0"), ["tap0"]);
    assert.deepEqual(await redirectTargets(ns, "tap0"), ["eth0"]);
  });
});

rootTest("wiring: unwire removes both qdiscs; twice is fine", async () => {
  await withVmNetns(async ({ ns, sock }) => {
    wireTapToVeth(sock, pair);
    unwireTap(sock, pair);
    assert.deepEqual(await ingressQdiscs(ns, "eth0"), []);
    assert.deepEqual(await ingressQdiscs(ns, "tap0"), []);
    assert.deepEqual(await redirectTargets(ns, "eth0"), []);
    assert.equal(describeWiring(sock, pair).wired, false);
    unwireTap(sock, pair);
    // Devices gone already: nothing to do, no error.
    unwireTap(sock, { veth: "gone0", tap: "gone1" });
  });
});

rootTest("wiring: only redirects pointing at each other count", async () => {
  await withVmNetns(async ({ ns, sock }) => {
    // One direction only.
    await sh("tc", "-n", ns, "qdisc", "add", "dev", "eth0", "ingress");
    await sh(
      "tc",
      ..."-n NS filter add dev eth0 parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev tap0"
        .replace("NS", ns).split(" "),
    );
    const one = describeWiring(sock, pair);
    assert.equal(one.vethToTap, true);
    assert.equal(one.tapToVeth, false);
    assert.equal(one.wired, false);
    // The tap redirecting elsewhere (to peer0) is not wired either.
    await sh("tc", "-n", ns, "qdisc", "add", "dev", "tap0", "ingress");
    await sh(
      "tc",
      ..."-n NS filter add dev tap0 parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev peer0"
        .replace("NS", ns).split(" "),
    );
    assert.equal(describeWiring(sock, pair).tapToVeth, false);
    // A missing device: its index is null, nothing is wired.
    const missing = describeWiring(sock, { veth: "eth0", tap: "nope0" });
    assert.equal(missing.tapIndex, null);
    assert.equal(missing.wired, false);
  });
});

rootTest("wiring: a stale redirect (recreated tap) is repaired", async () => {
  await withVmNetns(async ({ ns, path, sock }) => {
    wireTapToVeth(sock, pair);
    const before = getLinkByName(sock, "tap0")?.index;
    await sh("ip", "-n", ns, "link", "del", "tap0");
    withNetns(path, () => createTap({ name: "tap0" }));
    const after = getLinkByName(sock, "tap0")?.index;
    assert.notEqual(after, before);
    assert.equal(describeWiring(sock, pair).wired, false);

    assert.deepEqual(wireTapToVeth(sock, pair), { changed: true });
    assert.equal(describeWiring(sock, pair).wired, true);
    assert.deepEqual(await redirectTargets(ns, "eth0"), ["tap0"]);
    const veth = getLinkByName(sock, "eth0")!.index;
    assert.deepEqual(
      listFilters(sock, veth).map((f) => f.prio),
      [WIRING_PRIO],
      "the stale filter was replaced, not kept beside the new one",
    );
  });
});

rootTest("wiring: a failure rolls back what the call added", async () => {
  await withVmNetns(async ({ ns, sock }) => {
    // The tap's ingress is taken by a clsact: its ingress qdisc can't be added
    // after the veth side is already done.
    await sh("tc", "-n", ns, "qdisc", "add", "dev", "tap0", "clsact");
    assert.throws(
      () => wireTapToVeth(sock, pair),
      (e) =>
        e instanceof KernelError && e.code === "EEXIST" &&
        e.op === "add ingress qdisc" && e.object === "tap0",
    );
    assert.deepEqual(await ingressQdiscs(ns, "eth0"), [], "veth side undone");
    assert.deepEqual(
      (await ingressQdiscs(ns, "tap0")).map((q) => q.kind),
      ["clsact"],
      "what was there before is untouched",
    );

    // An ingress qdisc that existed before the call stays; only the filter
    // this call added goes.
    const veth = getLinkByName(sock, "eth0")!.index;
    addIngressQdisc(sock, veth);
    assert.throws(() => wireTapToVeth(sock, pair), KernelError);
    assert.deepEqual(
      (await ingressQdiscs(ns, "eth0")).map((q) => q.kind),
      ["ingress"],
    );
    assert.deepEqual(listFilters(sock, veth), []);
  });
});

rootTest("wiring: a missing device is ENODEV, nothing is made", async () => {
  await withVmNetns(async ({ ns, sock }) => {
    assert.throws(
      () => wireTapToVeth(sock, { veth: "eth0", tap: "nope0" }),
      (e) =>
        e instanceof KernelError && e.code === "ENODEV" &&
        e.op === "wire tap to veth" && e.object === "nope0",
    );
    assert.deepEqual(await ingressQdiscs(ns, "eth0"), []);
  });
});
