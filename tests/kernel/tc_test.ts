/**
 * src/kernel/tc.ts against iproute2: every change is made in a throwaway
 * named netns and checked with `tc -n NS -j ...`.
 */
import assert from "node:assert/strict";
import { getLinkByName } from "../../src/kernel/link.ts";
import { withNetns } from "../../src/kernel/netns.ts";
import {
  addIngressQdisc,
  addRedirectFilter,
  deleteFilters,
  deleteIngressQdisc,
  INGRESS_HANDLE,
  listFilters,
  listQdiscs,
} from "../../src/kernel/tc.ts";
import { IfEther, PktSched } from "../../src/netlink/constants.ts";
import { NetlinkSocket } from "../../src/netlink/socket.ts";
import { InvalidArgumentError, KernelError } from "../../src/sys/errors.ts";
import {
  rootTest,
  sh,
  tcJson,
  uniquePrefix,
  withScratchNetns,
} from "../support/harness.ts";

type Json = Record<string, unknown>;

/** Runs `tc -n NS <words of line>` (the oracle's way of making things). */
function tc(ns: string, line: string): Promise<string> {
  return sh("tc", "-n", ns, ...line.split(" "));
}

/**
 * Runs `fn` with a netlink socket in a fresh named netns holding the veth
 * pairs `pairs` ([name, peer] each), and a resolver of ifindexes.
 */
async function withVeths(
  pairs: [string, string][],
  fn: (
    ctx: { ns: string; sock: NetlinkSocket; idx: (name: string) => number },
  ) => Promise<void> | void,
): Promise<void> {
  const prefix = uniquePrefix("tc");
  await withScratchNetns(prefix, ["a"], async ([path]) => {
    const ns = `${prefix}a`;
    for (const [a, b] of pairs) {
      await sh("ip", "-n", ns, "link", "add", a, "type", "veth", "peer", b);
    }
    const sock = withNetns(path, () => NetlinkSocket.open());
    try {
      const idx = (name: string) => {
        const link = getLinkByName(sock, name);
        assert.ok(link, `link ${name} exists`);
        return link.index;
      };
      await fn({ ns, sock, idx });
    } finally {
      sock.close();
    }
  });
}

function assertKernelError(
  fn: () => unknown,
  code: string,
  op: string,
  object: string,
): void {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof KernelError, `KernelError, got ${err}`);
    assert.equal(err.code, code);
    assert.equal(err.op, op);
    assert.equal(err.object, object);
    return true;
  });
}

/** `tc -j filter show dev DEV ingress`, minus the per-action kernel index. */
async function ingressFilterJson(ns: string, dev: string): Promise<Json[]> {
  const filters = await tcJson<Json>(
    "-n",
    ns,
    "filter",
    "show",
    "dev",
    dev,
    "ingress",
  );
  for (const f of filters) {
    const opts = f.options as { actions?: Json[] } | undefined;
    for (const a of opts?.actions ?? []) delete a.index;
  }
  return filters;
}

rootTest("tc: ingress qdisc add, list and delete match tc", async () => {
  await withVeths([["va", "vb"]], async ({ ns, sock, idx }) => {
    const va = idx("va");
    assert.equal(addIngressQdisc(sock, va, { label: "va" }), true);

    const shown = await tcJson<Json>("-n", ns, "qdisc", "show", "dev", "va");
    const ingress = shown.filter((q) => q.kind === "ingress");
    assert.deepEqual(
      ingress.map((q) => [q.handle, q.parent]),
      [["ffff:", "ffff:fff1"]],
    );
    assert.deepEqual(
      listQdiscs(sock, va).filter((q) => q.kind === "ingress"),
      [{
        ifindex: va,
        kind: "ingress",
        handle: INGRESS_HANDLE,
        parent: PktSched.TC_H_INGRESS,
      }],
    );
    // Without a device filter, every device's qdiscs (the ingress among them).
    assert.ok(
      listQdiscs(sock).some((q) => q.ifindex === va && q.kind === "ingress"),
    );
    assert.ok(
      !listQdiscs(sock, idx("vb")).some((q) => q.kind === "ingress"),
      "the peer has none",
    );

    assert.equal(deleteIngressQdisc(sock, va, { label: "va" }), true);
    const after = await tcJson<Json>("-n", ns, "qdisc", "show", "dev", "va");
    assert.ok(!after.some((q) => q.kind === "ingress"), JSON.stringify(after));
    assert.deepEqual(
      listQdiscs(sock, va).filter((q) => q.kind === "ingress"),
      [],
    );
  });
});

rootTest("tc: adding the ingress qdisc twice is EEXIST, typed", async () => {
  await withVeths([["va", "vb"]], ({ sock, idx }) => {
    const va = idx("va");
    addIngressQdisc(sock, va, { label: "va" });
    assertKernelError(
      () => addIngressQdisc(sock, va, { label: "va" }),
      "EEXIST",
      "add ingress qdisc",
      "va",
    );
    assert.equal(
      addIngressQdisc(sock, va, { label: "va", ignoreExisting: true }),
      false,
    );
    // Without a label the device is named by its ifindex.
    assertKernelError(
      () => addIngressQdisc(sock, va),
      "EEXIST",
      "add ingress qdisc",
      `ifindex ${va}`,
    );
  });
});

rootTest("tc: deleting a missing ingress qdisc", async () => {
  await withVeths([["va", "vb"]], ({ sock, idx }) => {
    const va = idx("va");
    // Never had one.
    assert.throws(
      () => deleteIngressQdisc(sock, va, { label: "va" }),
      (e) => e instanceof KernelError && e.op === "delete ingress qdisc",
    );
    assert.equal(deleteIngressQdisc(sock, va, { ignoreMissing: true }), false);
    // Had one, deleted it: the kernel answers differently; still "missing".
    addIngressQdisc(sock, va);
    assert.equal(deleteIngressQdisc(sock, va), true);
    assert.throws(
      () => deleteIngressQdisc(sock, va, { label: "va" }),
      (e) => e instanceof KernelError && e.object === "va",
    );
    assert.equal(deleteIngressQdisc(sock, va, { ignoreMissing: true }), false);
  });
});

rootTest("tc: an unknown device is ENODEV, a bad ifindex refused", async () => {
  await withVeths([["va", "vb"]], ({ sock }) => {
    assertKernelError(
      () => addIngressQdisc(sock, 99999, { label: "ghost" }),
      "ENODEV",
      "add ingress qdisc",
      "ghost",
    );
    assert.throws(() => addIngressQdisc(sock, 0), InvalidArgumentError);
    assert.throws(() => addIngressQdisc(sock, 1.5), InvalidArgumentError);
  });
});

rootTest(
  "tc: redirect filter is what `tc filter add ... mirred egress redirect` makes",
  async () => {
    await withVeths(
      [["a1", "b1"], ["a2", "b2"]],
      async ({ ns, sock, idx }) => {
        const a1 = idx("a1"), b1 = idx("b1"), b2 = idx("b2");
        addIngressQdisc(sock, a1, { label: "a1" });
        addRedirectFilter(sock, {
          ifindex: a1,
          label: "a1",
          toIfindex: b1,
          toLabel: "b1",
        });
        // The oracle: the same filter made by tc on an identical pair.
        await tc(ns, "qdisc add dev a2 ingress");
        await tc(
          ns,
          "filter add dev a2 parent ffff: pref 1 protocol all u32 match u32 0 0 action mirred egress redirect dev b2",
        );

        const ours = await ingressFilterJson(ns, "a1");
        const theirs = await ingressFilterJson(ns, "a2");
        const node = ours.find((f) =>
          (f.options as Json | undefined)?.actions !== undefined
        );
        assert.ok(node, JSON.stringify(ours));
        assert.equal(node.kind, "u32");
        assert.equal(node.protocol, "all");
        assert.equal(node.pref, 1);
        const action = (node.options as { actions: Json[] }).actions[0];
        assert.equal(action.kind, "mirred");
        assert.equal(action.mirred_action, "redirect");
        assert.equal(action.direction, "egress");
        assert.equal(action.to_dev, "b1");
        assert.deepEqual(action.control_action, { type: "stolen" });
        assert.equal(
          JSON.stringify(ours).replaceAll('"b1"', '"PEER"'),
          JSON.stringify(theirs).replaceAll('"b2"', '"PEER"'),
        );

        // Our decoder reads both the same way.
        const expected = (to: number) => [{
          kind: "u32",
          prio: 1,
          protocol: IfEther.ETH_P_ALL,
          handle: 0x80000800,
          chain: 0,
          matchAll: true,
          keys: [{ off: 0, mask: 0, val: 0 }],
          terminal: true,
          actions: [{
            kind: "mirred",
            direction: "egress",
            action: "redirect",
            ifindex: to,
          }],
        }];
        const strip = (fs: ReturnType<typeof listFilters>) =>
          fs.map((f) => ({
            ...f,
            actions: f.actions.map((a) => {
              const { index: _index, ...rest } = a as { index?: number };
              return rest;
            }),
          }));
        assert.deepEqual(strip(listFilters(sock, a1)), expected(b1));
        assert.deepEqual(strip(listFilters(sock, idx("a2"))), expected(b2));
        // A device without an ingress qdisc has no filters.
        assert.deepEqual(listFilters(sock, b1), []);
      },
    );
  },
);

rootTest("tc: a selector that is not match-all is told apart", async () => {
  await withVeths([["va", "vb"]], async ({ ns, sock, idx }) => {
    await tc(ns, "qdisc add dev va ingress");
    await tc(
      ns,
      "filter add dev va parent ffff: pref 3 protocol ip u32 match ip dst 10.0.0.1/32 action mirred egress mirror dev vb",
    );
    const [f] = listFilters(sock, idx("va"));
    assert.equal(f.prio, 3);
    assert.equal(f.protocol, IfEther.ETH_P_IP);
    assert.equal(f.matchAll, false);
    assert.deepEqual(
      { ...f.actions[0], index: undefined },
      {
        kind: "mirred",
        direction: "egress",
        action: "mirror",
        ifindex: idx("vb"),
        index: undefined,
      },
    );
  });
});

rootTest("tc: redirect filter errors name the op and the devices", async () => {
  await withVeths([["va", "vb"]], ({ sock, idx }) => {
    const va = idx("va"), vb = idx("vb");
    // No ingress qdisc to attach to.
    assert.throws(
      () =>
        addRedirectFilter(sock, {
          ifindex: va,
          label: "va",
          toIfindex: vb,
          toLabel: "vb",
        }),
      (e) =>
        e instanceof KernelError && e.op === "add redirect filter" &&
        e.object === "va -> vb" && e.message.includes("add redirect filter va"),
    );
    addIngressQdisc(sock, va);
    // A target that does not exist.
    assert.throws(
      () => addRedirectFilter(sock, { ifindex: va, toIfindex: 99999 }),
      (e) =>
        e instanceof KernelError && e.op === "add redirect filter" &&
        e.object === `ifindex ${va} -> ifindex 99999`,
    );
    assert.deepEqual(listFilters(sock, va), [], "nothing half-made is left");
    assert.throws(
      () => addRedirectFilter(sock, { ifindex: va, toIfindex: vb, prio: 0 }),
      InvalidArgumentError,
    );
    assert.throws(
      () =>
        addRedirectFilter(sock, { ifindex: va, toIfindex: vb, prio: 0x10000 }),
      InvalidArgumentError,
    );
  });
});

rootTest("tc: deleting filters by prio and all at once", async () => {
  await withVeths([["va", "vb"]], async ({ ns, sock, idx }) => {
    const va = idx("va"), vb = idx("vb");
    addIngressQdisc(sock, va);
    addRedirectFilter(sock, { ifindex: va, toIfindex: vb, prio: 1 });
    addRedirectFilter(sock, { ifindex: va, toIfindex: vb, prio: 2 });
    assert.deepEqual(listFilters(sock, va).map((f) => f.prio), [1, 2]);

    deleteFilters(sock, va, { prio: 1 });
    assert.deepEqual(listFilters(sock, va).map((f) => f.prio), [2]);
    const shown = await ingressFilterJson(ns, "va");
    assert.deepEqual([...new Set(shown.map((f) => f.pref))], [2]);

    // A prio that has none is ENOENT.
    assert.throws(
      () => deleteFilters(sock, va, { prio: 7, label: "va" }),
      (e) =>
        e instanceof KernelError && e.code === "ENOENT" &&
        e.op === "delete filters" && e.object === "va",
    );

    deleteFilters(sock, va);
    assert.deepEqual(listFilters(sock, va), []);
    assert.deepEqual(await ingressFilterJson(ns, "va"), []);
    // The qdisc stays; deleting it works too.
    assert.equal(deleteIngressQdisc(sock, va), true);
  });
});

rootTest("tc: deleting the ingress qdisc leaves a clsact alone", async () => {
  await withVeths([["va", "vb"]], async ({ ns, sock, idx }) => {
    await tc(ns, "qdisc add dev va clsact");
    const va = idx("va");
    assert.throws(
      () => deleteIngressQdisc(sock, va, { label: "va" }),
      (e) => e instanceof KernelError && e.code === "EINVAL",
    );
    // There is no ingress qdisc to delete, and the clsact is not ours.
    assert.equal(deleteIngressQdisc(sock, va, { ignoreMissing: true }), false);
    // Adding ours where a clsact sits is EEXIST, even with ignoreExisting.
    assert.throws(
      () => addIngressQdisc(sock, va, { ignoreExisting: true }),
      (e) => e instanceof KernelError && e.code === "EEXIST",
    );
    const shown = await tcJson<Json>("-n", ns, "qdisc", "show", "dev", "va");
    assert.deepEqual(
      shown.filter((q) => q.kind === "clsact").length,
      1,
      JSON.stringify(shown),
    );
  });
});
