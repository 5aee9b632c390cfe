/**
 * Address module against the kernel, with `ip -j addr` as the oracle, in the
 * test process's throwaway netns (scripts/test.sh runs it under
 * `unshare --net`).
 */
import assert from "node:assert/strict";
import {
  addAddr,
  type Address,
  delAddr,
  flushAddrs,
  listAddrs,
} from "../../src/kernel/addr.ts";
import {
  createVeth,
  deleteLink,
  getLinkByName,
  setLinkUp,
} from "../../src/kernel/link.ts";
import { IfAddr } from "../../src/netlink/constants.ts";
import { NetlinkSocket } from "../../src/netlink/socket.ts";
import { InvalidArgumentError, KernelError } from "../../src/sys/errors.ts";
import { ipJson, rootTest } from "../support/harness.ts";

// deno-lint-ignore no-explicit-any
type Json = Record<string, any>;

function ifn(tag: string): string {
  const r = crypto.getRandomValues(new Uint32Array(2));
  return `${tag}${r[0].toString(36)}${r[1].toString(36)}`.slice(0, 10);
}

/** `ip -j addr show dev NAME` as `addr/prefix` strings, sorted. */
async function ipAddrs(dev: string, family?: 4 | 6): Promise<string[]> {
  const fam = family === 4 ? ["-4"] : family === 6 ? ["-6"] : [];
  const [l] = await ipJson<Json>(...fam, "addr", "show", "dev", dev);
  return (l?.addr_info ?? []).map((a: Json) => `${a.local}/${a.prefixlen}`)
    .sort();
}

function texts(addrs: Address[]): string[] {
  return addrs.map((a) => `${a.address}/${a.prefix}`).sort();
}

/** A veth pair for one test; `fn` gets the socket and both names. */
async function withVeth(
  fn: (sock: NetlinkSocket, v0: string, v1: string) => Promise<void>,
): Promise<void> {
  const v0 = ifn("aa"), v1 = ifn("ap");
  const sock = NetlinkSocket.open();
  try {
    createVeth(sock, v0, v1);
    await fn(sock, v0, v1);
  } finally {
    deleteLink(sock, v0, { ignoreMissing: true });
    sock.close();
  }
}

function assertKernelError(fn: () => unknown, code: string, op: string) {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof KernelError, `not a KernelError: ${err}`);
    assert.equal(err.code, code, err.message);
    assert.equal(err.op, op);
    return true;
  });
}

rootTest("addr: add v4 and v6, list filtered matches ip", async () => {
  await withVeth(async (sock, v0, v1) => {
    const index = getLinkByName(sock, v0)!.index;
    addAddr(sock, v0, "10.77.0.2/24");
    addAddr(sock, v0, "fd00:77::2/64", { noDad: true });
    addAddr(sock, v0, "fd00:77::3/64");
    addAddr(sock, v1, "10.77.0.3/24");

    const mine = listAddrs(sock, { index });
    assert.deepEqual(texts(mine), await ipAddrs(v0));
    assert.deepEqual(
      texts(mine),
      ["10.77.0.2/24", "fd00:77::2/64", "fd00:77::3/64"],
    );
    assert.deepEqual(
      texts(listAddrs(sock, { index, family: 4 })),
      await ipAddrs(v0, 4),
    );
    assert.deepEqual(
      texts(listAddrs(sock, { index, family: 6 })),
      ["fd00:77::2/64", "fd00:77::3/64"],
    );
    assert.ok(mine.every((a) => a.index === index));
    const v4 = mine.find((a) => a.family === 4)!;
    assert.equal(v4.label, v0);
    assert.equal(v4.scope, IfAddr.RT_SCOPE_UNIVERSE);

    // nodad: no DAD pending; without it the address waits tentative.
    const [ip] = await ipJson<Json>("-6", "addr", "show", "dev", v0);
    const byLocal = new Map<string, Json>(
      ip.addr_info.map((a: Json) => [a.local, a]),
    );
    assert.equal(byLocal.get("fd00:77::2")?.tentative, undefined);
    assert.equal(byLocal.get("fd00:77::3")?.tentative, true);
    const nodad = mine.find((a) => a.address === "fd00:77::2")!;
    assert.ok(nodad.flags & IfAddr.IFA_F_NODAD);
    assert.ok(!(nodad.flags & IfAddr.IFA_F_TENTATIVE));

    // The whole-netns dump agrees with the oracle too.
    const all = await ipJson<Json>("addr", "show");
    const oracle = all.flatMap((l) =>
      l.addr_info.map((a: Json) => `${l.ifindex} ${a.local}/${a.prefixlen}`)
    ).sort();
    assert.deepEqual(
      listAddrs(sock).map((a) => `${a.index} ${a.address}/${a.prefix}`)
        .sort(),
      oracle,
    );
  });
});

rootTest("addr: duplicate add is EEXIST, typed", async () => {
  await withVeth(async (sock, v0) => {
    addAddr(sock, v0, "10.77.1.2/24");
    addAddr(sock, v0, "fd00:77:1::2/64", { noDad: true });
    assertKernelError(
      () => addAddr(sock, v0, "10.77.1.2/24"),
      "EEXIST",
      "add address",
    );
    assertKernelError(
      () => addAddr(sock, v0, "fd00:77:1::2/64", { noDad: true }),
      "EEXIST",
      "add address",
    );
    assert.deepEqual(await ipAddrs(v0), ["10.77.1.2/24", "fd00:77:1::2/64"]);
  });
});

rootTest("addr: delete, and delete of an absent address", async () => {
  await withVeth(async (sock, v0) => {
    addAddr(sock, v0, "10.77.2.2/24");
    addAddr(sock, v0, "10.77.2.9/24");
    addAddr(sock, v0, "fd00:77:2::2/64", { noDad: true });
    assert.equal(delAddr(sock, v0, "10.77.2.9/24"), true);
    assert.equal(delAddr(sock, v0, "fd00:77:2::2/64"), true);
    assert.deepEqual(await ipAddrs(v0), ["10.77.2.2/24"]);
    assertKernelError(
      () => delAddr(sock, v0, "fd00:77:2::2/64"),
      "EADDRNOTAVAIL",
      "delete address",
    );
    assertKernelError(
      () => delAddr(sock, v0, "10.77.2.9/24"),
      "EADDRNOTAVAIL",
      "delete address",
    );
    assert.equal(
      delAddr(sock, v0, "10.77.2.9/24", { ignoreMissing: true }),
      false,
    );
    assert.equal(
      delAddr(sock, v0, "fd00:77:2::2/64", { ignoreMissing: true }),
      false,
    );
    assert.deepEqual(await ipAddrs(v0), ["10.77.2.2/24"]);
  });
});

rootTest("addr: flush per family, then all (link-local included)", async () => {
  await withVeth(async (sock, v0, v1) => {
    setLinkUp(sock, v1);
    setLinkUp(sock, v0);
    addAddr(sock, v0, "10.77.3.2/24");
    addAddr(sock, v0, "10.77.3.3/24"); // a secondary of the first
    addAddr(sock, v0, "10.77.4.2/24");
    addAddr(sock, v0, "fd00:77:3::2/64", { noDad: true });
    // The kernel gives the link its fe80:: once it is up with carrier.
    const deadline = Date.now() + 2000;
    while (
      !(await ipAddrs(v0, 6)).some((a) => a.startsWith("fe80:")) &&
      Date.now() < deadline
    ) await new Promise((r) => setTimeout(r, 20));
    const v6 = await ipAddrs(v0, 6);
    assert.ok(v6.some((a) => a.startsWith("fe80:")), `no link-local: ${v6}`);
    const peerBefore = await ipAddrs(v1);

    assert.equal(flushAddrs(sock, v0, 4), 3);
    assert.deepEqual(await ipAddrs(v0, 4), []);
    assert.deepEqual(await ipAddrs(v0, 6), v6, "IPv6 untouched");

    assert.equal(flushAddrs(sock, v0), v6.length);
    assert.deepEqual(await ipAddrs(v0), []);
    assert.equal(flushAddrs(sock, v0), 0, "nothing left to flush");
    assert.deepEqual(await ipAddrs(v1), peerBefore, "peer untouched");
  });
});

rootTest("addr: missing link is ENODEV, bad CIDR is refused", async () => {
  await withVeth(async (sock, v0) => {
    const missing = ifn("zz");
    assertKernelError(
      () => addAddr(sock, missing, "10.77.5.2/24"),
      "ENODEV",
      "add address",
    );
    assertKernelError(
      () => delAddr(sock, missing, "10.77.5.2/24", { ignoreMissing: true }),
      "ENODEV",
      "delete address",
    );
    assertKernelError(
      () => flushAddrs(sock, missing),
      "ENODEV",
      "flush addresses",
    );
    for (const bad of ["10.77.5.2/33", "10.77.5/24", "fd00::g/64", "x"]) {
      assert.throws(() => addAddr(sock, v0, bad), InvalidArgumentError, bad);
      assert.throws(() => delAddr(sock, v0, bad), InvalidArgumentError, bad);
    }
    assert.throws(
      () => addAddr(sock, "a/b", "10.77.5.2/24"),
      InvalidArgumentError,
    );
    assert.deepEqual(await ipAddrs(v0), []);
  });
});
