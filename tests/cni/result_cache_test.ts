import assert from "node:assert/strict";
import { join } from "node:path";
import {
  CniCacheError,
  CniResultError,
  FileAttachmentCache,
  parseCidr,
  resultForVersion,
  toCniResult,
} from "../../src/cni/mod.ts";
import { withTempDir } from "./_helpers.ts";

Deno.test("toCniResult: 0.4.0 result with per-IP version becomes 1.0 form, IPv4 and IPv6", () => {
  const r = toCniResult({
    cniVersion: "0.4.0",
    interfaces: [{ name: "br0", mac: "aa:bb:cc:dd:ee:01" }, {
      name: "eth0",
      mac: "aa:bb:cc:dd:ee:02",
      sandbox: "/var/run/netns/x",
    }],
    ips: [
      {
        version: "4",
        address: "10.233.9.5/24",
        gateway: "10.233.9.1",
        interface: 1,
      },
      {
        version: "6",
        address: "fd00:233:9::5/64",
        gateway: "fd00:233:9::1",
        interface: 1,
      },
    ],
    routes: [{ dst: "0.0.0.0/0" }],
    dns: {},
  }, "test");
  assert.equal(r.cniVersion, "1.0.0");
  assert.deepEqual(r.ips, [
    { address: "10.233.9.5/24", gateway: "10.233.9.1", interface: 1 },
    { address: "fd00:233:9::5/64", gateway: "fd00:233:9::1", interface: 1 },
  ]);
  assert.equal(r.interfaces[1].sandbox, "/var/run/netns/x");
  // And back, for a 0.4.0 list's prevResult.
  const back = resultForVersion(r, "0.4.0") as {
    cniVersion: string;
    ips: { version: string }[];
  };
  assert.equal(back.cniVersion, "0.4.0");
  assert.deepEqual(back.ips.map((i) => i.version), ["4", "6"]);
  assert.equal(
    Object.hasOwn(
      (resultForVersion(r, "1.0.0") as { ips: object[] }).ips[0],
      "version",
    ),
    false,
  );
});

Deno.test("toCniResult: 0.2.0 ip4/ip6 and 1.0 pass-through; invalid results rejected", () => {
  const old = toCniResult({
    cniVersion: "0.2.0",
    ip4: {
      ip: "10.233.8.2/24",
      gateway: "10.233.8.1",
      routes: [{ dst: "0.0.0.0/0" }],
    },
    ip6: { ip: "fd00:233:8::2/64" },
  }, "old");
  assert.deepEqual(old.ips, [{
    address: "10.233.8.2/24",
    gateway: "10.233.8.1",
  }, { address: "fd00:233:8::2/64" }]);
  assert.deepEqual(old.routes, [{ dst: "0.0.0.0/0" }]);
  const cur = toCniResult({
    cniVersion: "1.0.0",
    ips: [{ address: "10.0.0.1/8" }],
  }, "cur");
  assert.deepEqual(cur, {
    cniVersion: "1.0.0",
    interfaces: [],
    ips: [{ address: "10.0.0.1/8" }],
    routes: [],
    dns: {},
  });

  assert.throws(() => toCniResult("x", "s"), CniResultError);
  assert.throws(
    () => toCniResult({ ips: [] }, "s"),
    /missing or malformed 'cniVersion'/,
  );
  assert.throws(
    () => toCniResult({ cniVersion: "1.0.0", ips: [{ address: "nope" }] }, "s"),
    /ips\.0\.address/,
  );
  assert.throws(
    () =>
      toCniResult({
        cniVersion: "1.0.0",
        ips: [{ address: "10.0.0.1/8", interface: 2 }],
      }, "s"),
    /names interface 2, but there are 0/,
  );
});

Deno.test("parseCidr splits address, prefix and version", () => {
  assert.deepEqual(parseCidr("10.88.0.5/16"), {
    address: "10.88.0.5",
    prefix: 16,
    version: 4,
  });
  assert.deepEqual(parseCidr("fd00::5/64"), {
    address: "fd00::5",
    prefix: 64,
    version: 6,
  });
  assert.throws(() => parseCidr("10.0.0.1/33"), RangeError);
});

Deno.test("FileAttachmentCache: put/get/delete/list, one 0600 file per attachment, keys unambiguous", async () => {
  await withTempDir(async (base) => {
    const dir = join(base, "results");
    const cache = new FileAttachmentCache(dir);
    const k1 = { network: "a-b", containerId: "c", ifName: "eth0" };
    const k2 = { network: "a", containerId: "b-c", ifName: "eth0" };
    assert.equal(await cache.get(k1), null);
    assert.deepEqual(await cache.list("a"), []); // no dir yet
    const result = toCniResult({
      cniVersion: "1.0.0",
      ips: [{ address: "10.233.7.2/24" }],
    }, "t");
    await cache.put(k1, {
      config: '{"x":1}',
      result,
      args: [["IP", "10.233.7.2"]],
    });
    await cache.put(k2, {
      config: '{"y":2}',
      result: null,
      capabilityArgs: { mac: "0a:58:00:00:00:01" },
    });
    assert.notEqual(cache.pathOf(k1), cache.pathOf(k2));
    assert.equal((await Deno.stat(cache.pathOf(k1))).mode! & 0o777, 0o600);
    assert.equal((await Deno.stat(dir)).mode! & 0o777, 0o700);
    assert.deepEqual(await cache.get(k1), {
      config: '{"x":1}',
      result,
      args: [["IP", "10.233.7.2"]],
    });
    assert.deepEqual(await cache.get(k2), {
      config: '{"y":2}',
      result: null,
      capabilityArgs: { mac: "0a:58:00:00:00:01" },
    });
    assert.deepEqual(await cache.list("a"), [k2]);
    assert.deepEqual(await cache.list("a-b"), [k1]);
    await cache.delete(k1);
    await cache.delete(k1); // absent: no error
    assert.equal(await cache.get(k1), null);
    // No temp files left behind by the atomic writes.
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names, [cache.pathOf(k2).slice(dir.length + 1)]);
    // A path-like container id cannot escape the directory.
    const evil = { network: "n", containerId: "../../etc/x", ifName: "eth0" };
    assert.ok(!cache.pathOf(evil).slice(dir.length + 1).includes("/"));
    // A corrupt entry is a typed error naming the file.
    await Deno.writeTextFile(cache.pathOf(k1), "garbage");
    await assert.rejects(
      () => cache.get(k1),
      (e: unknown) =>
        e instanceof CniCacheError && e.object === cache.pathOf(k1),
    );
  });
});
