/**
 * Every validation rule of a CNI result, accepted and refused, with the
 * message checked; and the conversions of 0.1.0-1.1.0 results to 1.0 form.
 */
import assert from "node:assert/strict";
import {
  type CniResult,
  CniResultError,
  resultForVersion,
  toCniResult,
} from "../../src/cni/mod.ts";

/** Refused with a CniResultError naming `source`; its message matches `re`. */
function refuses(raw: unknown, re: RegExp): void {
  assert.throws(
    () => toCniResult(raw, "bridge ADD"),
    (e: unknown) => {
      assert.ok(e instanceof CniResultError, String(e));
      assert.match(e.message, /bridge ADD/);
      assert.match(e.message, re);
      return true;
    },
    JSON.stringify(raw),
  );
}

const v1 = (extra: Record<string, unknown>) => ({
  cniVersion: "1.0.0",
  ...extra,
});

Deno.test("result rules: the top level and cniVersion", () => {
  for (const raw of ["x", 1, null, [], true, undefined]) {
    refuses(raw, /not a JSON object/);
  }
  for (const cniVersion of [undefined, 1, "1.0", "", "v1.0.0"]) {
    refuses({ cniVersion }, /missing or malformed 'cniVersion'/);
  }
  assert.deepEqual(toCniResult({ cniVersion: "1.0.0" }, "s"), {
    cniVersion: "1.0.0",
    interfaces: [],
    ips: [],
    routes: [],
    dns: {},
  });
});

Deno.test("result rules: interfaces", () => {
  for (const interfaces of [5, "x", {}, null]) {
    refuses(v1({ interfaces }), /^.*: interfaces: expected a list, got /);
  }
  refuses(
    v1({ interfaces: [{ mac: "m" }] }),
    /interfaces\.0\.name: missing \(expected a string\)/,
  );
  refuses(
    v1({ interfaces: [{ name: "a" }, "eth0"] }),
    /interfaces\.1: expected an object, got a string/,
  );
  refuses(
    v1({ interfaces: [{ name: 1, mac: 2, sandbox: [], mtu: "1500" }] }),
    new RegExp(
      "interfaces\\.0\\.name: expected a string, got a number; " +
        "interfaces\\.0\\.mac: expected a string, got a number; " +
        "interfaces\\.0\\.sandbox: expected a string, got a list; " +
        "interfaces\\.0\\.mtu: expected a number, got a string$",
    ),
  );
  const r = toCniResult(
    v1({
      interfaces: [
        { name: "br0" },
        { name: "eth0", mac: "m", sandbox: "/ns", mtu: 1500, pciID: "x" },
      ],
    }),
    "s",
  );
  assert.deepEqual(r.interfaces, [
    { name: "br0" },
    { name: "eth0", mac: "m", sandbox: "/ns", mtu: 1500, pciID: "x" },
  ]);
});

Deno.test("result rules: ips", () => {
  for (const ips of [5, "10.0.0.1/8", {}]) {
    refuses(v1({ ips }), /: ips: expected a list, got /);
  }
  refuses(
    v1({ ips: [{}] }),
    /ips\.0\.address: missing \(expected a string\)/,
  );
  for (const address of ["nope", "10.0.0.1", "10.0.0.1/1234", "/8", " 1.2/8"]) {
    refuses(
      v1({ ips: [{ address }] }),
      /ips\.0\.address: not an address\/prefix/,
    );
  }
  for (const gateway of ["gw", "10.0.0.1/8", ""]) {
    refuses(
      v1({ ips: [{ address: "10.0.0.2/8", gateway }] }),
      /ips\.0\.gateway: not an IP address/,
    );
  }
  refuses(
    v1({ ips: [{ address: "10.0.0.2/8", interface: "0" }] }),
    /ips\.0\.interface: expected a number, got a string/,
  );
  refuses(
    v1({ ips: [{ address: "10.0.0.2/8", interface: 0.5 }] }),
    /ips\.0\.interface: expected a whole number$/,
  );
  refuses(
    v1({ ips: [{ address: "10.0.0.2/8", interface: -1 }] }),
    /ips\.0\.interface: expected a whole number from 0 to 9007199254740991/,
  );
  refuses(
    v1({ ips: [{ address: "10.0.0.2/8", interface: 2 ** 53 }] }),
    /ips\.0\.interface: expected a whole number from 0 to/,
  );
  for (const version of ["5", 4, "", null]) {
    refuses(
      v1({ ips: [{ address: "10.0.0.2/8", version }] }),
      /ips\.0\.version: expected one of "4", "6"/,
    );
  }
  refuses(
    v1({ ips: [{ address: "10.0.0.2/8", interface: 1 }] }),
    /ip 10\.0\.0\.2\/8 names interface 1, but there are 0/,
  );
  const r = toCniResult(
    v1({
      interfaces: [{ name: "eth0" }],
      ips: [
        { address: "10.0.0.2/8", gateway: "10.0.0.1", interface: 0, x: 1 },
        { address: "fd00::2/64", gateway: "fd00::1", version: "6" },
      ],
    }),
    "s",
  );
  // A 1.0 result's stray "version" is dropped too; other keys are kept.
  assert.deepEqual(r.ips, [
    { address: "10.0.0.2/8", gateway: "10.0.0.1", interface: 0, x: 1 },
    { address: "fd00::2/64", gateway: "fd00::1" },
  ]);
});

Deno.test("result rules: routes and dns", () => {
  refuses(v1({ routes: {} }), /: routes: expected a list, got an object/);
  refuses(
    v1({ routes: [{}] }),
    /routes\.0\.dst: missing \(expected a string\)/,
  );
  refuses(
    v1({ routes: [{ dst: "0.0.0.0" }] }),
    /routes\.0\.dst: not an address\/prefix/,
  );
  refuses(
    v1({ routes: [{ dst: "0.0.0.0/0", gw: "router" }] }),
    /routes\.0\.gw: not an IP address/,
  );
  for (const dns of [[], "1.1.1.1", 1, null]) {
    refuses(v1({ dns }), /: dns: expected an object, got /);
  }
  refuses(
    v1({
      dns: { nameservers: "1.1.1.1", domain: 1, search: [1], options: [null] },
    }),
    new RegExp(
      "dns\\.nameservers: expected a list, got a string; " +
        "dns\\.domain: expected a string, got a number; " +
        "dns\\.search\\.0: expected a string, got a number; " +
        "dns\\.options\\.0: expected a string, got null$",
    ),
  );
  // 1.1's route fields and unknown dns keys are kept.
  const r = toCniResult({
    cniVersion: "1.1.0",
    routes: [{ dst: "10.0.0.0/8", gw: "10.0.0.1", mtu: 1400, table: 5 }],
    dns: {
      nameservers: ["1.1.1.1"],
      domain: "d",
      search: [],
      options: [],
      z: 1,
    },
  }, "s");
  assert.equal(r.cniVersion, "1.1.0");
  assert.deepEqual(r.routes, [
    { dst: "10.0.0.0/8", gw: "10.0.0.1", mtu: 1400, table: 5 },
  ]);
  assert.deepEqual(r.dns, {
    nameservers: ["1.1.1.1"],
    domain: "d",
    search: [],
    options: [],
    z: 1,
  });
});

Deno.test("result rules: at most five problems, each with its path", () => {
  assert.throws(
    () =>
      toCniResult(
        v1({ ips: Array.from({ length: 8 }, () => ({ address: "x" })) }),
        "s",
      ),
    (e: unknown) =>
      e instanceof CniResultError &&
      e.message.split("; ").length === 5 &&
      /ips\.0\.address: .*ips\.4\.address: not an address\/prefix$/.test(
        e.message,
      ),
  );
});

Deno.test("result rules: 0.1.0/0.2.0 ip4/ip6 become ips and routes", () => {
  for (const cniVersion of ["0.1.0", "0.2.0"]) {
    const r = toCniResult({
      cniVersion,
      ip4: {
        ip: "10.0.0.2/24",
        gateway: "10.0.0.1",
        routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }],
      },
      ip6: { ip: "fd00::2/64", routes: [{ dst: "::/0" }] },
      dns: { nameservers: ["10.0.0.1"] },
      // Fields of later versions mean nothing here and are not read.
      ips: "ignored",
      interfaces: 5,
    }, "s");
    assert.deepEqual(r, {
      cniVersion: "1.0.0",
      interfaces: [],
      ips: [
        { address: "10.0.0.2/24", gateway: "10.0.0.1" },
        { address: "fd00::2/64" },
      ],
      routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }, { dst: "::/0" }],
      dns: { nameservers: ["10.0.0.1"] },
    });
  }
  refuses({ cniVersion: "0.2.0", ip4: {} }, /ip4\.ip: missing/);
  refuses({ cniVersion: "0.2.0", ip4: { ip: "x" } }, /ip4\.ip: not an address/);
  refuses(
    { cniVersion: "0.2.0", ip6: { ip: "fd00::2/64", gateway: "g" } },
    /ip6\.gateway: not an IP address/,
  );
  refuses(
    { cniVersion: "0.2.0", ip4: { ip: "10.0.0.2/24", routes: [{ gw: "1" }] } },
    /ip4\.routes\.0\.dst: missing/,
  );
  refuses(
    { cniVersion: "0.1.0", ip6: "fd00::2/64" },
    /ip6: expected an object/,
  );
  refuses({ cniVersion: "0.1.0", dns: [] }, /dns: expected an object/);
});

Deno.test("result rules: 0.3.x/0.4.0 lose the per-IP version; 1.0/1.1 keep their version", () => {
  for (const cniVersion of ["0.3.0", "0.3.1", "0.4.0"]) {
    const r = toCniResult({
      cniVersion,
      interfaces: [{ name: "eth0" }],
      ips: [{ version: "4", address: "10.0.0.2/24", interface: 0 }],
    }, "s");
    assert.equal(r.cniVersion, "1.0.0");
    assert.deepEqual(r.ips, [{ address: "10.0.0.2/24", interface: 0 }]);
  }
  for (const cniVersion of ["1.0.0", "1.1.0", "1.2.0"]) {
    assert.equal(toCniResult({ cniVersion }, "s").cniVersion, cniVersion);
  }
});

Deno.test("result rules: the 1.0 form is a fresh copy, known keys first, no __proto__", () => {
  const route = { gw: "10.0.0.1", table: 5, dst: "0.0.0.0/0" };
  const raw = { cniVersion: "1.0.0", routes: [route], dns: { z: 1 } };
  const r: CniResult = toCniResult(raw, "s");
  assert.notEqual(r.routes[0], route);
  route.dst = "changed";
  assert.equal(r.routes[0].dst, "0.0.0.0/0");
  // Known keys in the spec's order, then the others as they came: what a
  // cache file or prevResult then holds, byte for byte.
  assert.equal(
    JSON.stringify(r.routes[0]),
    '{"dst":"0.0.0.0/0","gw":"10.0.0.1","table":5}',
  );
  const evil = toCniResult(
    JSON.parse(
      '{"cniVersion":"1.0.0","dns":{"__proto__":{"polluted":1},"domain":"d"},' +
        '"interfaces":[{"name":"a","__proto__":{"x":1}}]}',
    ),
    "s",
  );
  assert.deepEqual(evil.dns, { domain: "d" });
  assert.equal(Object.getPrototypeOf(evil.dns), Object.prototype);
  assert.equal(Object.getPrototypeOf(evil.interfaces[0]), Object.prototype);
  assert.equal((evil.dns as Record<string, unknown>).polluted, undefined);
});

Deno.test("resultForVersion: adds the per-IP version below 1.0, refuses below 0.3.0", () => {
  const r = toCniResult({
    cniVersion: "1.0.0",
    ips: [{ address: "10.0.0.2/24" }, { address: "fd00::2/64" }],
  }, "s");
  assert.deepEqual(resultForVersion(r, "0.3.1").ips, [
    { address: "10.0.0.2/24", version: "4" },
    { address: "fd00::2/64", version: "6" },
  ]);
  assert.deepEqual(resultForVersion(r, "1.1.0"), { ...r, cniVersion: "1.1.0" });
  assert.throws(
    () => resultForVersion(r, "0.2.0"),
    /cannot be given to a plugin as CNI 0\.2\.0/,
  );
});
