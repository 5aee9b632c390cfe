/**
 * Link module against the kernel, with iproute2 as the oracle. The test
 * process runs in a throwaway netns (scripts/test.sh: `unshare --net`), so
 * links made here never reach the host; names are unique anyway because
 * other test files share that netns.
 */
import assert from "node:assert/strict";
import {
  createBridge,
  createDummy,
  createVeth,
  deleteLink,
  getLinkByIndex,
  getLinkByName,
  listLinks,
  MAX_IFALIAS,
  renameLink,
  requireLink,
  setGroMaxSize,
  setInet6AddrGenMode,
  setLinkAlias,
  setLinkDown,
  setLinkUp,
  setMac,
  setMaster,
  setMtu,
  setTxQueueLen,
} from "../../src/kernel/link.ts";
import { withNetns } from "../../src/kernel/netns.ts";
import { IfLink } from "../../src/netlink/constants.ts";
import { NetlinkSocket } from "../../src/netlink/socket.ts";
import { Errno } from "../../src/sys/errno.ts";
import { InvalidArgumentError, KernelError } from "../../src/sys/errors.ts";
import { check, cstr, libc } from "../../src/sys/libc.ts";
import { O_CLOEXEC, O_RDONLY } from "../../src/kernel/constants.ts";
import {
  ipJson,
  rootTest,
  uniquePrefix,
  withScratchNetns,
} from "../support/harness.ts";

/** A unique interface name (<= 15 bytes): 2-char tag + 8 random chars. */
function ifn(tag: string): string {
  const r = crypto.getRandomValues(new Uint32Array(2));
  return `${tag}${r[0].toString(36)}${r[1].toString(36)}`.slice(0, 10);
}

// deno-lint-ignore no-explicit-any
type IpLink = Record<string, any>;

async function ipLink(name: string, ...ns: string[]): Promise<IpLink> {
  const [l] = await ipJson<IpLink>(...ns, "-d", "link", "show", "dev", name);
  return l;
}

async function ipLinkNames(): Promise<string[]> {
  return (await ipJson<IpLink>("link", "show")).map((l) => l.ifname);
}

/** Runs `fn` with a fresh socket, deleting `names` and closing afterwards. */
async function withLinks(
  names: string[],
  fn: (sock: NetlinkSocket) => Promise<void> | void,
): Promise<void> {
  const sock = NetlinkSocket.open();
  try {
    await fn(sock);
  } finally {
    for (const n of names) deleteLink(sock, n, { ignoreMissing: true });
    sock.close();
  }
}

function assertKernelError(fn: () => unknown, code: string, op?: string) {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof KernelError, `not a KernelError: ${err}`);
    assert.equal(err.code, code, err.message);
    if (op) assert.equal(err.op, op);
    return true;
  });
}

rootTest("link: create bridge and veth, get by name/index, dump", async () => {
  const br = ifn("lb"), v0 = ifn("la"), v1 = ifn("lp");
  await withLinks([br, v0], async (sock) => {
    createBridge(sock, br, { mtu: 1400 });
    createVeth(sock, v0, v1);

    const b = getLinkByName(sock, br);
    assert.ok(b);
    assert.equal(b.kind, "bridge");
    assert.equal(b.mtu, 1400);
    assert.equal(b.up, false);
    const ipB = await ipLink(br);
    assert.equal(ipB.ifindex, b.index);
    assert.equal(ipB.linkinfo.info_kind, "bridge");
    assert.equal(ipB.mtu, 1400);
    assert.equal(ipB.address, b.mac);

    const a = getLinkByName(sock, v0);
    const p = getLinkByName(sock, v1);
    assert.ok(a && p);
    assert.equal(a.kind, "veth");
    assert.equal(p.kind, "veth");
    assert.equal(a.linkIndex, p.index, "IFLA_LINK names the peer");
    assert.equal(p.linkIndex, a.index);
    const ipA = await ipLink(v0);
    assert.equal(ipA.link, v1);
    assert.equal(ipA.mtu, a.mtu);
    assert.equal(ipA.txqlen, a.txqlen);
    assert.equal(ipA.num_tx_queues, a.numTxQueues);
    assert.equal(ipA.num_rx_queues, a.numRxQueues);
    assert.equal(ipA.gso_max_size, a.gsoMaxSize);

    assert.deepEqual(getLinkByIndex(sock, a.index), a);
    assert.equal(getLinkByName(sock, ifn("zz")), null);
    assert.equal(getLinkByIndex(sock, 0x7ffffff0), null);
    assert.equal(requireLink(sock, v0, "test").index, a.index);
    assertKernelError(
      () => requireLink(sock, ifn("zz"), "test op"),
      "ENODEV",
      "test op",
    );

    const dumped = listLinks(sock);
    const byName = new Map(dumped.map((l) => [l.name, l]));
    for (const n of [br, v0, v1]) assert.ok(byName.has(n), n);
    assert.deepEqual(byName.get(v0), a);
    // Same set of links as the oracle sees.
    assert.deepEqual(
      dumped.map((l) => l.name).sort(),
      (await ipLinkNames()).sort(),
    );
  });
});

rootTest("link: veth with MTU and MACs on both ends", async () => {
  const v0 = ifn("la"), v1 = ifn("lp");
  await withLinks([v0], async (sock) => {
    createVeth(sock, v0, v1, {
      mtu: 1450,
      mac: "0a:58:0a:00:00:01",
      peerMac: "0A-58-0A-00-00-02",
    });
    const [a, p] = [await ipLink(v0), await ipLink(v1)];
    assert.equal(a.mtu, 1450);
    assert.equal(p.mtu, 1450);
    assert.equal(a.address, "0a:58:0a:00:00:01");
    assert.equal(p.address, "0a:58:0a:00:00:02");
    assert.equal(getLinkByName(sock, v1)?.mac, "0a:58:0a:00:00:02");
  });
});

rootTest("link: veth peer created in another netns (peerNetnsFd)", async () => {
  const prefix = uniquePrefix("lk");
  const v0 = ifn("la"), v1 = ifn("lp");
  await withScratchNetns(prefix, ["peer"], async ([path]) => {
    await withLinks([v0], async (sock) => {
      const fd = check(
        libc().open(cstr(path), O_RDONLY | O_CLOEXEC, 0),
        "open netns",
        path,
      );
      try {
        createVeth(sock, v0, v1, { peerNetnsFd: fd });
      } finally {
        libc().close(fd);
      }
      assert.equal(getLinkByName(sock, v1), null, "peer is not here");
      assert.ok(getLinkByName(sock, v0));
      const peer = await ipLink(v1, "-n", prefix + "peer");
      assert.equal(peer.linkinfo.info_kind, "veth");
    });
  });
});

rootTest("link: sockets opened in a named netns via withNetns", async () => {
  const prefix = uniquePrefix("lk");
  const v0 = ifn("la"), v1 = ifn("lp");
  await withScratchNetns(prefix, ["ns"], async ([path]) => {
    const sock = withNetns(path, () => NetlinkSocket.open());
    try {
      // Back in our own netns; the socket still works in the named one.
      createVeth(sock, v0, v1);
      setLinkUp(sock, v0);
      assert.ok(getLinkByName(sock, v0)?.up);
      const names = (await ipJson<IpLink>("-n", prefix + "ns", "link", "show"))
        .map((l) => l.ifname);
      assert.ok(names.includes(v0) && names.includes(v1));
      assert.ok(!(await ipLinkNames()).includes(v0), "not in our netns");
      assert.ok(deleteLink(sock, v0));
    } finally {
      sock.close();
    }
  });
});

rootTest(
  "link: dummy device (where the kernel has CONFIG_DUMMY)",
  async (t) => {
    const d = ifn("ld");
    await withLinks([d], async (sock) => {
      try {
        createDummy(sock, d);
      } catch (err) {
        // Typed even when the kind is missing ("Unknown device type").
        assert.ok(err instanceof KernelError);
        assert.equal(err.code, "EOPNOTSUPP");
        assert.equal(err.op, "create dummy");
        assert.equal(err.object, d);
        assert.equal(getLinkByName(sock, d), null);
        await t.step({ name: "dummy unsupported here", ignore: true, fn() {} });
        return;
      }
      assert.equal((await ipLink(d)).linkinfo.info_kind, "dummy");
      assert.equal(getLinkByName(sock, d)?.kind, "dummy");
    });
  },
);

rootTest("link: up/down, mtu, mac, txqlen", async () => {
  const v0 = ifn("la"), v1 = ifn("lp");
  await withLinks([v0], async (sock) => {
    createVeth(sock, v0, v1);
    setLinkUp(sock, v0);
    assert.ok((await ipLink(v0)).flags.includes("UP"));
    assert.equal(getLinkByName(sock, v0)?.up, true);
    setLinkDown(sock, v0);
    assert.ok(!(await ipLink(v0)).flags.includes("UP"));
    assert.equal(getLinkByName(sock, v0)?.up, false);

    setMtu(sock, v0, 1280);
    assert.equal((await ipLink(v0)).mtu, 1280);
    assertKernelError(() => setMtu(sock, v0, 10), "EINVAL", "set mtu");
    assert.equal((await ipLink(v0)).mtu, 1280);

    setMac(sock, v0, "02:00:00:aa:bb:cc");
    assert.equal((await ipLink(v0)).address, "02:00:00:aa:bb:cc");
    assert.throws(
      () => setMac(sock, v0, "02:00:00:aa:bb"),
      InvalidArgumentError,
    );
    // A multicast MAC is refused by the kernel (EADDRNOTAVAIL), typed.
    assertKernelError(
      () => setMac(sock, v0, "01:00:00:aa:bb:cc"),
      "EADDRNOTAVAIL",
      "set mac",
    );

    setTxQueueLen(sock, v0, 10000);
    assert.equal((await ipLink(v0)).txqlen, 10000);
    assert.equal(getLinkByName(sock, v0)?.txqlen, 10000);
  });
});

rootTest(
  "link: alias set, read back (decodeLink) and cleared, as ip shows it",
  async () => {
    const v0 = ifn("la"), v1 = ifn("lp");
    await withLinks([v0], async (sock) => {
      createVeth(sock, v0, v1);
      assert.equal((await ipLink(v0)).ifalias, undefined);
      assert.equal(getLinkByName(sock, v0)?.alias, undefined);
      assert.ok(!("alias" in getLinkByName(sock, v0)!), "absent, not empty");

      const tag = "vmnic 0a1b2c3d /var/lib/vmnic";
      setLinkAlias(sock, v0, tag);
      assert.equal((await ipLink(v0)).ifalias, tag);
      const link = getLinkByName(sock, v0)!;
      assert.equal(link.alias, tag);
      assert.equal(getLinkByIndex(sock, link.index)?.alias, tag);
      assert.equal(listLinks(sock).find((l) => l.name === v0)?.alias, tag);
      assert.equal(getLinkByName(sock, v1)?.alias, undefined, "not the peer's");

      // Replaced, UTF-8 kept; up to MAX_IFALIAS bytes, in characters or not.
      for (
        const alias of ["ünïcödé ✓", "x".repeat(MAX_IFALIAS), "é".repeat(127)]
      ) {
        setLinkAlias(sock, v0, alias);
        assert.equal((await ipLink(v0)).ifalias, alias);
        assert.equal(getLinkByName(sock, v0)?.alias, alias);
      }
      // One byte more is refused before the kernel is asked; nothing changes.
      for (const alias of ["x".repeat(MAX_IFALIAS + 1), "é".repeat(128)]) {
        assert.throws(() => setLinkAlias(sock, v0, alias), (err: unknown) => {
          assert.ok(err instanceof InvalidArgumentError, `${err}`);
          assert.match(err.message, /longer than 254 bytes/);
          return true;
        });
      }
      assert.equal(getLinkByName(sock, v0)?.alias, "é".repeat(127));

      // "" clears it: ip shows none, decodeLink leaves the field out.
      setLinkAlias(sock, v0, "");
      assert.equal((await ipLink(v0)).ifalias, undefined);
      assert.ok(!("alias" in getLinkByName(sock, v0)!));
      assertKernelError(
        () => setLinkAlias(sock, ifn("zz"), tag),
        "ENODEV",
        "set link alias",
      );
      assert.throws(() => setLinkAlias(sock, "a/b", tag), InvalidArgumentError);
    });
  },
);

rootTest(
  "link: alias of lo in a named netns (the netns tag), seen by ip -n",
  async () => {
    const prefix = uniquePrefix("lk");
    await withScratchNetns(prefix, ["tag"], async ([path]) => {
      const sock = withNetns(path, () => NetlinkSocket.open());
      try {
        const tag = `vmnic ${prefix} /tmp/root dir`;
        setLinkAlias(sock, "lo", tag);
        const [lo] = await ipJson<IpLink>(
          "-n",
          prefix + "tag",
          "link",
          "show",
          "lo",
        );
        assert.equal(lo.ifalias, tag);
        assert.equal(getLinkByName(sock, "lo")?.alias, tag);
        // Our own netns's lo is another device: untouched.
        assert.equal((await ipLink("lo")).ifalias, undefined);
      } finally {
        sock.close();
      }
    });
  },
);

rootTest("link: master and nomaster", async () => {
  const br = ifn("lb"), v0 = ifn("la"), v1 = ifn("lp");
  await withLinks([v0, br], async (sock) => {
    createBridge(sock, br);
    createVeth(sock, v0, v1);
    setMaster(sock, v0, br);
    assert.equal((await ipLink(v0)).master, br);
    assert.equal(
      getLinkByName(sock, v0)?.master,
      getLinkByName(sock, br)?.index,
    );
    setMaster(sock, v0, null);
    assert.equal((await ipLink(v0)).master, undefined);
    assert.equal(getLinkByName(sock, v0)?.master, undefined);
    const missing = ifn("zz");
    assert.throws(() => setMaster(sock, v0, missing), (err: unknown) => {
      assert.ok(err instanceof KernelError);
      assert.equal(err.code, "ENODEV");
      assert.equal(err.object, missing);
      return true;
    });
  });
});

rootTest("link: GRO max size (best effort)", async () => {
  const v0 = ifn("la"), v1 = ifn("lp");
  await withLinks([v0], async (sock) => {
    createVeth(sock, v0, v1);
    const before = await ipLink(v0);
    if (before.gro_max_size === undefined) {
      // Kernel before 5.19: the attribute is ignored, and we must say so.
      assert.equal(setGroMaxSize(sock, v0, 32768), false);
      return;
    }
    assert.equal(setGroMaxSize(sock, v0, 32768), true);
    assert.equal((await ipLink(v0)).gro_max_size, 32768);
    assert.equal(getLinkByName(sock, v0)?.groMaxSize, 32768);
    // Beyond GRO_MAX_SIZE: ERANGE, reported as false, value unchanged.
    assert.equal(setGroMaxSize(sock, v0, 0x7fffffff), false);
    assert.equal((await ipLink(v0)).gro_max_size, 32768);
    assertKernelError(() => setGroMaxSize(sock, ifn("zz"), 32768), "ENODEV");
  });
});

rootTest("link: rename (down; up where the kernel allows it)", async () => {
  const v0 = ifn("la"), v1 = ifn("lp"), renamed = ifn("lr"), live = ifn("ll");
  await withLinks([v0, renamed, live], async (sock) => {
    createVeth(sock, v0, v1);
    const index = getLinkByName(sock, v0)!.index;
    assertKernelError(() => renameLink(sock, v0, v1), "EEXIST", "rename link");
    renameLink(sock, v0, renamed);
    assert.equal((await ipLink(renamed)).ifindex, index);
    assert.equal(getLinkByName(sock, v0), null);
    assert.equal(getLinkByName(sock, renamed)?.index, index);
    assertKernelError(() => renameLink(sock, v0, ifn("lq")), "ENODEV");
    assert.throws(
      () => renameLink(sock, renamed, "x".repeat(16)),
      InvalidArgumentError,
    );
    // Up: Linux >= 6.2 renames live; older kernels refuse with EBUSY.
    setLinkUp(sock, renamed);
    try {
      renameLink(sock, renamed, live);
      assert.equal((await ipLink(live)).ifindex, index);
    } catch (err) {
      assert.ok(err instanceof KernelError && err.code === "EBUSY", `${err}`);
      assert.equal((await ipLink(renamed)).ifindex, index);
    }
  });
});

rootTest("link: inet6 addr_gen_mode none keeps the link silent", async () => {
  const v0 = ifn("la"), v1 = ifn("lp");
  await withLinks([v0], async (sock) => {
    createVeth(sock, v0, v1);
    const ok = setInet6AddrGenMode(sock, v0, IfLink.IN6_ADDR_GEN_MODE_NONE);
    const ipv6 = (await ipLink(v0)).inet6_addr_gen_mode;
    if (ipv6 === undefined) {
      assert.equal(ok, false, "no IPv6 here: must report false");
      return;
    }
    assert.equal(ok, true);
    assert.equal(ipv6, "none");
    assert.equal(
      getLinkByName(sock, v0)?.inet6AddrGenMode,
      IfLink.IN6_ADDR_GEN_MODE_NONE,
    );
    // Up with carrier: a link with mode eui64 (the peer) gets fe80::, ours not.
    setLinkUp(sock, v1);
    setLinkUp(sock, v0);
    const deadline = Date.now() + 2000;
    let peerLL = false;
    while (!peerLL && Date.now() < deadline) {
      const [p] = await ipJson<IpLink>("addr", "show", "dev", v1);
      peerLL = p.addr_info.some((a: IpLink) => a.scope === "link");
      if (!peerLL) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(peerLL, "control: the peer got its link-local address");
    const [mine] = await ipJson<IpLink>("addr", "show", "dev", v0);
    assert.deepEqual(mine.addr_info, []);
    assert.equal(
      setInet6AddrGenMode(sock, v0, IfLink.IN6_ADDR_GEN_MODE_EUI64),
      true,
    );
    assert.equal((await ipLink(v0)).inet6_addr_gen_mode, "eui64");
  });
});

rootTest("link: delete, idempotent delete, ENODEV, EEXIST", async () => {
  const v0 = ifn("la"), v1 = ifn("lp"), br = ifn("lb");
  await withLinks([v0, br], async (sock) => {
    createVeth(sock, v0, v1);
    createBridge(sock, br);
    assertKernelError(() => createBridge(sock, br), "EEXIST", "create bridge");
    assertKernelError(
      () => createVeth(sock, br, ifn("lq")),
      "EEXIST",
      "create veth",
    );
    assertKernelError(() => createVeth(sock, ifn("lq"), v1), "EEXIST");

    assert.equal(deleteLink(sock, v0), true);
    const names = await ipLinkNames();
    assert.ok(!names.includes(v0) && !names.includes(v1), "peer goes too");
    assert.equal(deleteLink(sock, v0, { ignoreMissing: true }), false);
    assertKernelError(() => deleteLink(sock, v0), "ENODEV", "delete link");

    const ops: [string, () => unknown][] = [
      ["set link up", () => setLinkUp(sock, v0)],
      ["set link down", () => setLinkDown(sock, v0)],
      ["set mtu", () => setMtu(sock, v0, 1400)],
      ["set mac", () => setMac(sock, v0, "02:00:00:00:00:01")],
      ["set txqueuelen", () => setTxQueueLen(sock, v0, 100)],
      ["set master", () => setMaster(sock, v0, br)],
      ["set nomaster", () => setMaster(sock, v0, null)],
      [
        "set inet6 addr_gen_mode",
        () => setInet6AddrGenMode(sock, v0, IfLink.IN6_ADDR_GEN_MODE_NONE),
      ],
    ];
    for (const [op, fn] of ops) {
      assert.throws(fn, (err: unknown) => {
        assert.ok(err instanceof KernelError, `${op}: ${err}`);
        assert.equal(err.code, "ENODEV", op);
        assert.equal(err.errno, Errno.ENODEV);
        assert.equal(err.op, op);
        assert.equal(err.object, v0);
        assert.match(err.message, new RegExp(`${op} ${v0}: ENODEV`));
        return true;
      });
    }
  });
});

rootTest("link: bad names are refused before the kernel is asked", async () => {
  const good = ifn("lg");
  const longest = ifn("l5").padEnd(15, "x");
  // "é" is 2 bytes: 8 of them are 16 bytes in 8 characters.
  const bad = ["x".repeat(16), "é".repeat(8), "a/b", "a b", "", "tab\tx"];
  await withLinks([good, longest], async (sock) => {
    const before = listLinks(sock).map((l) => l.name).sort();
    for (const name of bad) {
      const calls: (() => unknown)[] = [
        () => createBridge(sock, name),
        () => createVeth(sock, name, good),
        () => createVeth(sock, good, name),
        () => createDummy(sock, name),
        () => deleteLink(sock, name, { ignoreMissing: true }),
        () => getLinkByName(sock, name),
        () => setLinkUp(sock, name),
        () => setMtu(sock, name, 1400),
        () => renameLink(sock, name, good),
        () => setMaster(sock, good, name),
      ];
      for (const call of calls) {
        assert.throws(call, InvalidArgumentError, JSON.stringify(name));
      }
    }
    assert.deepEqual(listLinks(sock).map((l) => l.name).sort(), before);
    // 15 bytes is the limit, and it works.
    createBridge(sock, longest);
    assert.equal((await ipLink(longest)).ifname, longest);
  });
});
