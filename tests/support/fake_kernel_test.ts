/**
 * FakeKernel behaves like the kernel for what vmnic uses: the real kernel
 * layer (src/kernel) and the real wiring (src/wiring) run unchanged over
 * it, without root, and see what they would see on a real host.
 */
import assert from "node:assert/strict";
import { FakeKernel, HOST_NETNS, type KernelCall } from "./fake_kernel.ts";
import {
  inspectHostSide,
  inspectNic,
  netnsTag,
  plumbNic,
  repairNic,
  restoreVethAddrs,
  setNicQuiesced,
  tagNetns,
  TAP_TXQUEUELEN,
  unplumbNic,
} from "../../src/wiring/nic.ts";
import { describeWiring, wireTapToVeth } from "../../src/wiring/tap_wiring.ts";
import {
  createBridge,
  createVeth,
  deleteLink,
  getLinkByName,
  listLinks,
  renameLink,
  setGroMaxSize,
  setInet6AddrGenMode,
  setLinkAlias,
  setLinkUp,
  setMac,
  setMaster,
  setMtu,
} from "../../src/kernel/link.ts";
import {
  addAddr,
  delAddr,
  flushAddrs,
  listAddrs,
} from "../../src/kernel/addr.ts";
import {
  addIngressQdisc,
  addRedirectFilter,
  deleteFilters,
  deleteIngressQdisc,
  listFilters,
  listQdiscs,
} from "../../src/kernel/tc.ts";
import {
  IfAddr,
  IfEther,
  IfLink,
  PktSched,
} from "../../src/netlink/constants.ts";
import { Errno } from "../../src/sys/errno.ts";
import { InvalidArgumentError, KernelError } from "../../src/sys/errors.ts";

const DIR = "/run/vmnic-fake/netns";
const BRIDGE = "br0";
const VETH_MTU = 1450;

/** A KernelError with this errno. */
function errno(code: number) {
  return (e: unknown) => e instanceof KernelError && e.errno === code;
}

/**
 * A VM netns as the bridge plugin leaves it: `eth0` up with 10.0.0.2/24,
 * its host end `veth-<name>` up on bridge br0.
 */
function vmNetns(k: FakeKernel, name = "vm1"): string {
  const { path } = k.ensureNetns(name, DIR);
  if (!k.link(HOST_NETNS, BRIDGE)) k.createBridge(HOST_NETNS, BRIDGE);
  k.setLinkUp(HOST_NETNS, BRIDGE);
  const host = `veth-${name}`;
  k.createVethPair({
    netns: path,
    name: "eth0",
    hostName: host,
    mtu: VETH_MTU,
  });
  k.setLinkUp(path, "eth0");
  k.setLinkUp(HOST_NETNS, host);
  k.setMaster(HOST_NETNS, host, BRIDGE);
  k.addAddress(path, "eth0", "10.0.0.2/24");
  return path;
}

function plumb(k: FakeKernel, path: string, extra: { queues?: number } = {}) {
  return k.inNetns(
    path,
    (s) =>
      plumbNic(s, { veth: "eth0", tap: "tap0", queues: extra.queues ?? 1 }),
  );
}

Deno.test("netns: ensure, list, delete and stale leftovers as the real ones", () => {
  const k = new FakeKernel();
  assert.deepEqual(k.ensureNetns("b", DIR), {
    path: `${DIR}/b`,
    created: true,
  });
  assert.deepEqual(k.ensureNetns("a", `${DIR}/`), {
    path: `${DIR}/a`,
    created: true,
  });
  assert.equal(k.ensureNetns("a", DIR).created, false);
  k.addStaleFile(DIR, "c");
  assert.deepEqual(k.listNetns(DIR), ["a", "b"]);
  assert.deepEqual(k.listNetns(DIR, { stale: true }), ["a", "b", "c"]);
  assert.deepEqual(k.listNetns("/elsewhere"), []);
  assert.equal(k.netnsExists("c", DIR), false);
  assert.throws(() => k.inNetns(`${DIR}/c`, () => 0), errno(Errno.EINVAL));
  assert.throws(() => k.inNetns(`${DIR}/zz`, () => 0), errno(Errno.ENOENT));
  assert.equal(k.ensureNetns("c", DIR).created, true, "a leftover is replaced");
  assert.throws(() => k.ensureNetns("../x", DIR), InvalidArgumentError);

  // A new netns holds its loopback alone, down, index 1.
  const links = k.inNetns(`${DIR}/a`, (s) => listLinks(s.conn));
  assert.equal(links.length, 1);
  assert.deepEqual(
    [links[0].name, links[0].index, links[0].up, links[0].kind],
    ["lo", 1, false, undefined],
  );

  assert.equal(k.deleteNetns("a", DIR), true);
  assert.equal(k.deleteNetns("a", DIR), false);
  k.addStaleFile(DIR, "d");
  assert.equal(k.deleteNetns("d", DIR), true, "a leftover file is removed");
  assert.deepEqual(k.sharedDirs(), [DIR]);
  k.releaseNetnsDir(DIR);
  assert.deepEqual(k.sharedDirs(), [DIR], "kept while it holds netns");
  k.deleteNetns("b", DIR);
  k.deleteNetns("c", DIR);
  k.releaseNetnsDir(DIR);
  assert.deepEqual(k.sharedDirs(), []);
  assert.deepEqual(k.netnsDirPropagates(DIR), { ok: true });
  k.setDirPropagates({ ok: false, reason: "slave mount" });
  assert.equal(k.netnsDirPropagates(DIR).ok, false);
});

Deno.test("netns: a deleted netns lives while a scope is in it, then takes its veth's host end", () => {
  const k = new FakeKernel();
  const path = vmNetns(k);
  assert.ok(k.link(HOST_NETNS, "veth-vm1"));
  k.inNetns(path, (s) => {
    assert.equal(k.deleteNetns("vm1", DIR), true);
    assert.equal(k.netnsExists("vm1", DIR), false);
    assert.ok(getLinkByName(s.conn, "eth0"), "still usable from inside");
    assert.ok(k.link(HOST_NETNS, "veth-vm1"), "alive while the scope is");
  });
  assert.equal(k.link(HOST_NETNS, "veth-vm1"), null);
  assert.ok(k.link(HOST_NETNS, BRIDGE), "the bridge is the host's");
  assert.equal(k.openScopes, 0);
});

Deno.test("netns: async work inside a netns is refused, as withNetns refuses it", () => {
  const k = new FakeKernel();
  const { path } = k.ensureNetns("vm1", DIR);
  assert.throws(() => k.inNetns(path, async () => {}), /promise/);
  assert.equal(k.openScopes, 0);
  let kept: { conn: { close(): void } } | undefined;
  k.inHost((s) => (kept = s));
  assert.throws(
    () => getLinkByName(kept!.conn as never, "lo"),
    /netlink socket is closed/,
  );
});

Deno.test("links: the kernel layer creates, reads, changes and deletes them", () => {
  const k = new FakeKernel();
  k.inHost(({ conn }) => {
    createBridge(conn, "br1", { mtu: 9000 });
    assert.throws(() => createBridge(conn, "br1"), errno(Errno.EEXIST));
    createVeth(conn, "va", "vb", { mtu: 9000, mac: "02:00:00:00:00:0a" });
    const va = getLinkByName(conn, "va")!;
    const vb = getLinkByName(conn, "vb")!;
    assert.equal(va.kind, "veth");
    assert.equal(va.mtu, 9000);
    assert.equal(va.mac, "02:00:00:00:00:0a");
    assert.equal(va.linkIndex, vb.index, "IFLA_LINK names the peer");
    assert.equal(vb.linkIndex, va.index);
    assert.equal(vb.index + 1, va.index, "the peer is made first");
    assert.equal(va.inet6AddrGenMode, IfLink.IN6_ADDR_GEN_MODE_EUI64);
    assert.equal(getLinkByName(conn, "nope"), null);
    assert.throws(() => deleteLink(conn, "nope"), errno(Errno.ENODEV));
    assert.equal(deleteLink(conn, "nope", { ignoreMissing: true }), false);

    assert.throws(() => setMtu(conn, "va", 70000), errno(Errno.EINVAL));
    assert.throws(() => setMtu(conn, "va", 67), errno(Errno.EINVAL));
    assert.throws(
      () => setMac(conn, "va", "01:00:5e:00:00:01"),
      errno(Errno.EADDRNOTAVAIL),
    );
    assert.throws(
      () => setMac(conn, "lo", "02:00:00:00:00:01"),
      errno(Errno.EOPNOTSUPP),
    );
    setLinkAlias(conn, "va", "hello");
    assert.equal(getLinkByName(conn, "va")!.alias, "hello");
    assert.equal(
      setInet6AddrGenMode(conn, "va", IfLink.IN6_ADDR_GEN_MODE_NONE),
      true,
    );
    assert.equal(
      getLinkByName(conn, "va")!.inet6AddrGenMode,
      IfLink.IN6_ADDR_GEN_MODE_NONE,
    );
    assert.equal(setGroMaxSize(conn, "va", 131072), true);
    assert.equal(setGroMaxSize(conn, "va", 1 << 20), false, "ERANGE");
    assert.throws(() => setMaster(conn, "va", "nope"), errno(Errno.ENODEV));
    setMaster(conn, "va", "br1");
    assert.equal(
      getLinkByName(conn, "va")!.master,
      getLinkByName(conn, "br1")!.index,
    );
    assert.throws(() => setMaster(conn, "br1", "br1"), errno(Errno.ELOOP));
    renameLink(conn, "va", "vc");
    assert.equal(getLinkByName(conn, "va"), null);
    assert.throws(() => renameLink(conn, "vc", "vb"), errno(Errno.EEXIST));
    assert.throws(() => deleteLink(conn, "lo"), errno(Errno.EOPNOTSUPP));

    // Carrier needs both veth ends up.
    setLinkUp(conn, "vc");
    assert.equal(getLinkByName(conn, "vc")!.operstate, IfLink.IF_OPER_DOWN);
    setLinkUp(conn, "vb");
    assert.equal(getLinkByName(conn, "vc")!.operstate, IfLink.IF_OPER_UP);

    assert.equal(deleteLink(conn, "vc"), true);
    assert.equal(getLinkByName(conn, "vb"), null, "the peer goes too");
  });
});

Deno.test("addresses: EEXIST, secondaries, delete and flush as the kernel does them", () => {
  const k = new FakeKernel();
  k.inHost(({ conn }) => {
    createBridge(conn, "br1");
    const { index } = getLinkByName(conn, "br1")!;
    addAddr(conn, "br1", "10.1.0.1/24");
    assert.throws(
      () => addAddr(conn, "br1", "10.1.0.1/24"),
      errno(Errno.EEXIST),
    );
    addAddr(conn, "br1", "10.1.0.1/16", { noDad: true }); // other prefix: allowed
    addAddr(conn, "br1", "10.1.0.9/24");
    addAddr(conn, "br1", "fd00::1/64", { noDad: true });
    const addrs = listAddrs(conn, { index });
    assert.deepEqual(
      addrs.map((a) => `${a.address}/${a.prefix}`),
      ["10.1.0.1/24", "10.1.0.1/16", "10.1.0.9/24", "fd00::1/64"],
      "IPv4 before IPv6",
    );
    const sec = addrs.find((a) => a.address === "10.1.0.9")!;
    assert.ok(sec.flags & IfAddr.IFA_F_SECONDARY);
    assert.equal(sec.label, "br1");
    assert.ok(addrs[3].flags & IfAddr.IFA_F_NODAD);
    assert.throws(
      () => addAddr(conn, "nope", "10.9.9.9/24"),
      errno(Errno.ENODEV),
    );

    // Deleting a primary takes its secondaries (promote_secondaries off).
    assert.equal(delAddr(conn, "br1", "10.1.0.1/24"), true);
    assert.deepEqual(
      listAddrs(conn, { index, family: 4 }).map((a) => a.prefix),
      [16],
    );
    assert.equal(
      delAddr(conn, "br1", "10.1.0.9/24", { ignoreMissing: true }),
      false,
    );
    assert.throws(
      () => delAddr(conn, "br1", "10.1.0.9/24"),
      errno(Errno.EADDRNOTAVAIL),
    );
    assert.equal(flushAddrs(conn, "br1"), 2);
    assert.deepEqual(listAddrs(conn, { index }), []);
  });
});

Deno.test("link-local: made when a veth gets carrier, dropped when it goes down", () => {
  const k = new FakeKernel();
  const path = vmNetns(k);
  const v6 = () => k.addrs(path, "eth0").filter((a) => a.family === 6);
  assert.equal(v6().length, 1);
  assert.ok(v6()[0].address.startsWith("fe80::"));
  assert.equal(v6()[0].scope, IfAddr.RT_SCOPE_LINK);
  k.setLinkUp(path, "eth0", false);
  assert.equal(v6().length, 0, "IPv6 addresses go with the link down");
  assert.equal(k.addrs(path, "eth0").length, 1, "IPv4 stays");
  k.setLinkUp(path, "eth0");
  assert.equal(v6().length, 1, "and come back with it up");
});

Deno.test("tc: ingress qdiscs and redirect filters with the kernel's errnos", () => {
  const k = new FakeKernel();
  k.inHost(({ conn }) => {
    createVeth(conn, "va", "vb");
    const va = getLinkByName(conn, "va")!.index;
    const vb = getLinkByName(conn, "vb")!.index;
    assert.throws(
      () => deleteIngressQdisc(conn, va),
      errno(Errno.ENOENT),
      "never had an ingress queue",
    );
    assert.throws(
      () => addRedirectFilter(conn, { ifindex: va, toIfindex: vb }),
      errno(Errno.EINVAL),
      "no qdisc to attach to",
    );
    assert.equal(addIngressQdisc(conn, va), true);
    assert.equal(addIngressQdisc(conn, va, { ignoreExisting: true }), false);
    assert.throws(() => addIngressQdisc(conn, va), errno(Errno.EEXIST));
    assert.throws(() => addIngressQdisc(conn, 99), errno(Errno.ENODEV));
    assert.ok(
      listQdiscs(conn, va).some((q) =>
        q.kind === "ingress" && q.parent === PktSched.TC_H_INGRESS
      ),
    );

    addRedirectFilter(conn, { ifindex: va, toIfindex: vb, prio: 1 });
    assert.throws(
      () => addRedirectFilter(conn, { ifindex: va, toIfindex: 99, prio: 2 }),
      errno(Errno.ENODEV),
      "mirred to a device that is not there",
    );
    const [f, ...more] = listFilters(conn, va);
    assert.equal(
      more.length,
      0,
      "the handle-0 and hash table entries are skipped",
    );
    assert.deepEqual(
      [f.kind, f.prio, f.protocol, f.handle, f.chain, f.matchAll],
      ["u32", 1, IfEther.ETH_P_ALL, 0x80000800, 0, true],
    );
    assert.deepEqual(f.actions, [{
      kind: "mirred",
      direction: "egress",
      action: "redirect",
      ifindex: vb,
      index: 1,
    }]);
    addRedirectFilter(conn, { ifindex: va, toIfindex: vb, prio: 1 });
    assert.deepEqual(
      listFilters(conn, va).map((x) => x.handle),
      [0x80000800, 0x80000801],
      "a second node in the same hash table",
    );
    assert.throws(
      () => deleteFilters(conn, va, { prio: 2 }),
      errno(Errno.ENOENT),
    );
    deleteFilters(conn, va, { prio: 1 });
    assert.deepEqual(listFilters(conn, va), []);
    addRedirectFilter(conn, { ifindex: va, toIfindex: vb });
    deleteFilters(conn, va); // flush
    assert.deepEqual(listFilters(conn, va), []);

    // Had one and lost it: the placeholder answers the handle check (EINVAL).
    assert.equal(deleteIngressQdisc(conn, va), true);
    assert.throws(() => deleteIngressQdisc(conn, va), errno(Errno.EINVAL));
    assert.equal(deleteIngressQdisc(conn, va, { ignoreMissing: true }), false);
    assert.deepEqual(listFilters(conn, va), [], "no qdisc: an empty dump");
  });
});

Deno.test("plumbNic hands the veth to the guest and wires a TAP; inspectNic sees it", () => {
  const k = new FakeKernel();
  const path = vmNetns(k);
  const vethMac = k.link(path, "eth0")!.mac;
  const res = k.inNetns(
    path,
    (s) =>
      plumbNic(s, { veth: "eth0", tap: "tap0", queues: 2, tapOwner: 1000 }),
  );
  assert.deepEqual(res, { mac: vethMac, mtu: VETH_MTU });

  const eth0 = k.link(path, "eth0")!;
  const tap0 = k.link(path, "tap0")!;
  assert.equal(tap0.kind, "tun");
  assert.deepEqual(tap0.tap, { multiQueue: true, vnetHdr: true, owner: 1000 });
  assert.deepEqual(
    [tap0.mtu, tap0.txqlen, tap0.up, tap0.running],
    [VETH_MTU, TAP_TXQUEUELEN, true, false],
    "up, without carrier until a hypervisor attaches",
  );
  assert.equal(tap0.addrGenMode, IfLink.IN6_ADDR_GEN_MODE_NONE);
  assert.equal(eth0.addrGenMode, IfLink.IN6_ADDR_GEN_MODE_NONE);
  assert.deepEqual(k.addrs(path, "eth0"), [], "IPv4 and link-local flushed");
  assert.deepEqual(
    k.filters(path, "eth0").map((f) => f.actions[0].ifindex),
    [tap0.index],
  );
  assert.deepEqual(
    k.filters(path, "tap0").map((f) => f.actions[0].ifindex),
    [eth0.index],
  );

  const state = k.inNetns(
    path,
    (s) => inspectNic(s.conn, { veth: "eth0", tap: "tap0" }),
  );
  const hostEnd = k.link(HOST_NETNS, "veth-vm1")!;
  assert.deepEqual(state, {
    tapPresent: true,
    vethPresent: true,
    wired: true,
    vethMac,
    vethUp: true,
    tapUp: true,
    vethAddrs: [],
    peerIndex: hostEnd.index,
  });
  const host = k.inHost((s) => [
    inspectHostSide(s.conn, { name: "veth-vm1", bridge: BRIDGE }),
    inspectHostSide(s.conn, { index: state.peerIndex }),
    inspectHostSide(s.conn, { name: "gone", bridge: "nobr" }),
  ]);
  assert.deepEqual(host, [
    { present: true, name: "veth-vm1", master: BRIDGE, bridgePresent: true },
    { present: true, name: "veth-vm1", master: BRIDGE },
    { present: false, bridgePresent: false },
  ]);

  // A second plumb finds the TAP there (EBUSY) and leaves the first alone.
  assert.throws(() => plumb(k, path), errno(Errno.EBUSY));
  assert.ok(
    k.inNetns(
      path,
      (s) => describeWiring(s.conn, { veth: "eth0", tap: "tap0" }),
    ).wired,
  );
});

Deno.test("plumbNic down, setNicQuiesced: the veth's link state", () => {
  const k = new FakeKernel();
  const path = vmNetns(k);
  k.inNetns(
    path,
    (s) => plumbNic(s, { veth: "eth0", tap: "tap0", queues: 1, down: true }),
  );
  assert.equal(k.link(path, "eth0")!.up, false);
  assert.equal(k.link(HOST_NETNS, "veth-vm1")!.running, false, "no carrier");
  assert.equal(
    k.inNetns(path, (s) => setNicQuiesced(s.conn, "eth0", false)),
    true,
  );
  assert.equal(k.link(path, "eth0")!.up, true);
  assert.equal(
    k.addrs(path, "eth0").length,
    0,
    "addr_gen_mode none: no link-local",
  );
  assert.equal(
    k.inNetns(path, (s) => setNicQuiesced(s.conn, "eth0", true)),
    true,
  );
  assert.equal(k.link(path, "eth0")!.up, false);
  assert.equal(
    k.inNetns(path, (s) => setNicQuiesced(s.conn, "eth9", true)),
    false,
  );
});

Deno.test("unplumbNic and restoreVethAddrs: what teardown needs, idempotent", () => {
  const k = new FakeKernel();
  const path = vmNetns(k);
  plumb(k, path);
  k.inNetns(path, (s) => unplumbNic(s.conn, { veth: "eth0", tap: "tap0" }));
  assert.equal(k.link(path, "tap0"), null);
  assert.equal(k.link(path, "eth0")!.ingress, null);
  k.inNetns(path, (s) => unplumbNic(s.conn, { veth: "eth0", tap: "tap0" }));

  const restore = () =>
    k.inNetns(path, (s) => restoreVethAddrs(s.conn, "eth0", ["10.0.0.2/24"]));
  assert.equal(restore(), true);
  assert.equal(restore(), true, "EEXIST is fine");
  assert.deepEqual(k.addrs(path, "eth0").map((a) => a.cidr), ["10.0.0.2/24"]);
  k.deleteLink(path, "eth0");
  assert.equal(restore(), false, "no veth, nothing to restore");
  assert.equal(k.link(HOST_NETNS, "veth-vm1"), null, "the host end went too");
  k.inNetns(path, (s) => unplumbNic(s.conn, { veth: "eth0", tap: "tap0" }));
});

Deno.test("repairNic re-makes a TAP deleted by hand, its redirects, the MAC, and drops stray addresses", () => {
  const k = new FakeKernel();
  const path = vmNetns(k);
  const { mac } = plumb(k, path);
  k.deleteLink(path, "tap0");
  // The kernel shows a mirred whose target is gone with ifindex 0.
  assert.deepEqual(
    k.filters(path, "eth0").map((f) => f.actions[0].ifindex),
    [0],
  );
  k.addAddress(path, "eth0", "10.0.0.2/24");
  k.setLinkMac(path, "eth0", "02:00:00:00:00:99");
  const before = k.inNetns(
    path,
    (s) => inspectNic(s.conn, { veth: "eth0", tap: "tap0" }),
  );
  assert.deepEqual(
    [before.tapPresent, before.wired, before.vethAddrs],
    [false, false, ["10.0.0.2/24"]],
  );

  const opts = { veth: "eth0", tap: "tap0", queues: 1, mac };
  const { repaired } = k.inNetns(path, (s) => repairNic(s, opts));
  assert.deepEqual(repaired, [
    `MAC ${mac} set back on eth0`,
    "addresses 10.0.0.2/24 removed from eth0",
    "TAP tap0 re-made",
    "redirects between eth0 and tap0 re-made",
    "TAP tap0 up", // a re-made TAP starts down
  ]);
  const after = k.inNetns(
    path,
    (s) => inspectNic(s.conn, { veth: "eth0", tap: "tap0" }),
  );
  assert.deepEqual(
    [
      after.tapPresent,
      after.tapUp,
      after.wired,
      after.vethMac,
      after.vethAddrs,
    ],
    [true, true, true, mac, []],
  );
  assert.deepEqual(k.inNetns(path, (s) => repairNic(s, opts)).repaired, []);
});

Deno.test("wireTapToVeth replaces a redirect that points at another TAP", () => {
  const k = new FakeKernel();
  const path = vmNetns(k);
  plumb(k, path);
  k.inNetns(path, (s) => {
    s.createTap({ name: "tap1" });
    assert.deepEqual(wireTapToVeth(s.conn, { veth: "eth0", tap: "tap1" }), {
      changed: true,
    });
    assert.ok(describeWiring(s.conn, { veth: "eth0", tap: "tap1" }).wired);
    assert.equal(
      describeWiring(s.conn, { veth: "eth0", tap: "tap0" }).vethToTap,
      false,
    );
    assert.equal(k.filters(path, "eth0").length, 1);
    assert.deepEqual(wireTapToVeth(s.conn, { veth: "eth0", tap: "tap1" }), {
      changed: false,
    });
  });
});

Deno.test("tagNetns / netnsTag: the loopback's alias", () => {
  const k = new FakeKernel();
  const { path } = k.ensureNetns("vm1", DIR);
  k.inNetns(path, ({ conn }) => {
    assert.equal(netnsTag(conn), null);
    tagNetns(conn, "vmnic 0123abcd /var/lib/vmnic");
    assert.equal(netnsTag(conn), "vmnic 0123abcd /var/lib/vmnic");
    assert.throws(() => tagNetns(conn, "x".repeat(255)), InvalidArgumentError);
    tagNetns(conn, "");
    assert.equal(netnsTag(conn), null);
  });
});

Deno.test("failNext: plumbNic fails mid-way and its own cleanup leaves no TAP", async (t) => {
  // The TAP's own steps (addr_gen_mode, MTU, txqueuelen) failing after its
  // creation once left it behind: makeTap deletes it again now.
  const cases: [string, Parameters<FakeKernel["failNext"]>[0]][] = [
    ["TAP creation", { op: "createTap", errno: Errno.ENOMEM }],
    ["TAP addr_gen_mode", { op: "setlink", name: "tap0", errno: Errno.EINVAL }],
    [
      "TAP MTU",
      { op: "setlink", name: "tap0", skip: 1, errno: Errno.EINVAL },
    ],
    [
      "TAP txqueuelen",
      { op: "setlink", name: "tap0", skip: 2, errno: Errno.ENOMEM },
    ],
    ["ingress qdisc on the TAP", {
      op: "newqdisc",
      name: "tap0",
      errno: Errno.ENOBUFS,
    }],
    ["second redirect", { op: "newtfilter", skip: 1, errno: Errno.EIO }],
    ["TAP up (last step)", {
      op: "setlink",
      name: "tap0",
      skip: 3,
      errno: Errno.EPERM,
    }],
  ];
  for (const [what, rule] of cases) {
    await t.step({
      name: what,
      fn: () => {
        const k = new FakeKernel();
        const path = vmNetns(k);
        k.failNext({ netns: path, ...rule });
        assert.throws(
          () => plumb(k, path),
          (e) => errno(rule.errno)(e) && /injected/.test((e as Error).message),
        );
        assert.equal(k.pendingFailures, 0);
        assert.equal(k.link(path, "tap0"), null, "no TAP left");
        assert.equal(k.link(path, "eth0")!.ingress, null, "no qdisc left");
        assert.ok(k.link(path, "eth0"), "the veth is CNI's: kept");
        const failed = k.log.filter((c) => c.injected);
        assert.equal(failed.length, 1);
        assert.equal(failed[0].op, rule.op);
      },
    });
  }
});

Deno.test("failNext: matching by netns, name and times; reads only when named", () => {
  const k = new FakeKernel();
  const path = vmNetns(k);
  k.failNext({ errno: Errno.EPERM, netns: HOST_NETNS });
  k.inNetns(path, (s) => setLinkUp(s.conn, "lo")); // another netns: not hit
  k.inHost((s) => {
    assert.ok(getLinkByName(s.conn, BRIDGE), "a read is not hit without op");
    assert.throws(() => setLinkUp(s.conn, "lo"), errno(Errno.EPERM));
    setLinkUp(s.conn, "lo");
  });
  k.failNext({ op: "getlink", name: "eth0", errno: Errno.EIO, times: 2 });
  k.inNetns(path, (s) => {
    assert.throws(() => getLinkByName(s.conn, "eth0"), errno(Errno.EIO));
    assert.throws(() => getLinkByName(s.conn, "eth0"), errno(Errno.EIO));
    assert.ok(getLinkByName(s.conn, "eth0"));
  });
  k.failNext({ op: "ensureNetns", name: "vm2", errno: Errno.ENOSPC });
  assert.throws(() => k.ensureNetns("vm2", DIR), errno(Errno.ENOSPC));
  assert.equal(k.netnsExists("vm2", DIR), false);
  k.failNext({ op: "deleteNetns", errno: Errno.EBUSY });
  assert.throws(() => k.deleteNetns("vm1", DIR), errno(Errno.EBUSY));
  assert.equal(k.netnsExists("vm1", DIR), true);
  k.clearFailures();
  assert.equal(k.pendingFailures, 0);
});

Deno.test("the log: every step vmnic asked for, failures with their errno", () => {
  const k = new FakeKernel();
  const path = vmNetns(k);
  const start = k.log.length;
  assert.equal(start, 1, "by-hand changes are not logged; ensureNetns is");
  plumb(k, path);
  const steps = k.log.slice(start);
  const brief = (c: KernelCall) => `${c.op} ${c.object}`;
  assert.ok(steps.every((c) => c.netns === path));
  for (
    const want of [
      "createTap tap0",
      "newqdisc eth0",
      "newqdisc tap0",
      "newtfilter eth0",
      "newtfilter tap0",
    ]
  ) {
    assert.ok(steps.some((c) => brief(c) === want), want);
  }
  assert.equal(k.count({ op: "newtfilter" }), 2);
  k.inNetns(path, (s) => assert.equal(getLinkByName(s.conn, "nope"), null));
  assert.deepEqual(k.log.at(-1), {
    netns: path,
    op: "getlink",
    object: "nope",
    errno: Errno.ENODEV,
  });
});
