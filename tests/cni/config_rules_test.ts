/**
 * Every validation rule of a network configuration list, accepted and
 * refused, with the message checked: what field, where, what is allowed.
 */
import assert from "node:assert/strict";
import {
  CniConfigError,
  type NetworkConfigList,
  parseConf,
  parseConfList,
} from "../../src/cni/mod.ts";

/** A valid list with `extra` merged in (a key set to undefined is dropped). */
function list(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    cniVersion: "1.0.0",
    name: "net",
    plugins: [{ type: "bridge" }],
    ...extra,
  };
}

/** A valid list whose first plugin is `plugin`. */
const withPlugin = (plugin: unknown) => list({ plugins: [plugin] });

function accepts(obj: unknown): NetworkConfigList {
  return parseConfList(JSON.stringify(obj), "mem");
}

/** Refused with a CniConfigError whose reason is exactly `reason`. */
function refuses(obj: unknown, reason: string): void {
  assert.throws(
    () => parseConfList(JSON.stringify(obj), "mem"),
    (e: unknown) => {
      assert.ok(e instanceof CniConfigError, String(e));
      assert.equal(e.source, "mem");
      assert.equal(e.reason, reason);
      assert.equal(e.message, `CNI config mem: ${reason}`);
      return true;
    },
    JSON.stringify(obj),
  );
}

const PLAIN = "must be a plain executable name (no '/' or '..')";

Deno.test("rules: name", () => {
  for (const name of ["a", "0", "net-1.x_y", "A".repeat(300)]) {
    assert.equal(accepts(list({ name })).name, name);
  }
  refuses(list({ name: undefined }), "missing 'name'");
  for (const name of [5, null, true, [], {}]) {
    refuses(list({ name }), "'name' must be a string");
  }
  const rule =
    "'name' must start with a letter or digit and hold only letters, digits, '_', '.', '-'";
  for (const name of ["", "-a", ".a", "_a", "a b", "a/b", "é", "a\0b", "a\n"]) {
    refuses(list({ name }), rule);
  }
});

Deno.test("rules: cniVersion syntax and support", () => {
  assert.equal(accepts(list({ cniVersion: "0.1.0" })).cniVersion, "0.1.0");
  assert.equal(accepts(list({ cniVersion: "1.1.0" })).cniVersion, "1.1.0");
  refuses(list({ cniVersion: undefined }), "missing 'cniVersion'");
  for (const cniVersion of [1, null, false, ["1.0.0"], {}]) {
    refuses(list({ cniVersion }), "'cniVersion' must be a string");
  }
  for (const cniVersion of ["", "1", "1.0", "1.0.0.0", "v1.0.0", "1.0.x"]) {
    refuses(list({ cniVersion }), "'cniVersion' must look like 1.0.0");
  }
  refuses(
    list({ cniVersion: "2.0.0" }),
    "cniVersion 2.0.0 is not supported (supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0)",
  );
});

Deno.test("rules: cniVersions syntax and the spec's selection", () => {
  // The highest supported one wins, whatever the order; cniVersion may lack.
  const l = accepts(
    list({ cniVersion: undefined, cniVersions: ["1.0.0", "0.4.0", "1.1.0"] }),
  );
  assert.equal(l.cniVersion, "1.1.0");
  // None supported: cniVersion is the fallback, when there is one.
  assert.equal(
    accepts(list({ cniVersion: "0.4.0", cniVersions: ["3.0.0"] })).cniVersion,
    "0.4.0",
  );
  // An empty list means cniVersion.
  assert.equal(
    accepts(list({ cniVersion: "0.3.1", cniVersions: [] })).cniVersion,
    "0.3.1",
  );
  refuses(
    list({ cniVersion: undefined, cniVersions: ["3.0.0", "4.0.0"] }),
    "none of cniVersions 3.0.0, 4.0.0 is supported (supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0)",
  );
  refuses(
    list({ cniVersion: undefined, cniVersions: [] }),
    "missing 'cniVersion'",
  );
  for (const cniVersions of ["1.0.0", 1, null, {}]) {
    refuses(list({ cniVersions }), "'cniVersions' must be a list of versions");
  }
  refuses(
    list({ cniVersions: ["1.0.0", 1, "1.0", null] }),
    "cniVersions[1]: 'cniVersions[]' must be a string; " +
      "cniVersions[2]: 'cniVersions[]' must look like 1.0.0; " +
      "cniVersions[3]: 'cniVersions[]' must be a string",
  );
});

Deno.test('rules: disableCheck and disableGC accept true/false and "true"/"false"', () => {
  const cases: [unknown, boolean][] = [
    [undefined, false],
    [true, true],
    [false, false],
    ["true", true],
    ["false", false],
  ];
  for (const [v, want] of cases) {
    const l = accepts(list({ disableCheck: v, disableGC: v }));
    assert.equal(l.disableCheck, want, `disableCheck ${v}`);
    assert.equal(l.disableGC, want, `disableGC ${v}`);
  }
  for (const v of ["yes", "TRUE", "1", "", 1, 0, null, [], {}]) {
    refuses(list({ disableCheck: v }), "'disableCheck' must be true or false");
    refuses(list({ disableGC: v }), "'disableGC' must be true or false");
  }
  // A single-plugin config keeps its disableCheck.
  const one = parseConf(
    JSON.stringify({
      cniVersion: "1.0.0",
      name: "one",
      type: "ptp",
      disableCheck: "true",
    }),
  );
  assert.equal(one.disableCheck, true);
  assert.equal(JSON.parse(one.raw).disableCheck, "true");
});

Deno.test("rules: plugins is a non-empty list of objects", () => {
  refuses(list({ plugins: undefined }), "missing 'plugins'");
  for (const plugins of ["bridge", "", 1, null, {}, { type: "bridge" }]) {
    refuses(list({ plugins }), "'plugins' must be a list");
  }
  refuses(list({ plugins: [] }), "'plugins' is empty");
  refuses(
    list({ plugins: [{ type: "bridge" }, "x", null, [], 7] }),
    "plugins[1]: must be an object, not a string; " +
      "plugins[2]: must be an object, not null; " +
      "plugins[3]: must be an object, not a list; " +
      "plugins[4]: must be an object, not a number",
  );
});

Deno.test("rules: plugin type and ipam.type are plain executable names", () => {
  for (const type of ["bridge", "host-local", "a.b", "x_y", ".hidden", "é"]) {
    const l = accepts(withPlugin({ type, ipam: { type } }));
    assert.equal(l.plugins[0].type, type);
  }
  refuses(withPlugin({ bridge: "br0" }), "plugins[0].type: missing 'type'");
  for (const type of [1, null, true, [], {}]) {
    refuses(withPlugin({ type }), "plugins[0].type: 'type' must be a string");
    refuses(
      withPlugin({ type: "bridge", ipam: { type } }),
      "plugins[0].ipam.type: 'ipam.type' must be a string",
    );
  }
  refuses(withPlugin({ type: "" }), "plugins[0].type: 'type' is empty");
  for (const type of ["/bin/sh", "a/b", "..", "a..b", "../sh", "x/"]) {
    refuses(withPlugin({ type }), `plugins[0].type: 'type' ${PLAIN}`);
    refuses(
      withPlugin({ type: "bridge", ipam: { type } }),
      `plugins[0].ipam.type: 'ipam.type' ${PLAIN}`,
    );
  }
  refuses(
    withPlugin({ type: "bri\0dge" }),
    "plugins[0].type: 'type' contains a NUL byte",
  );
  refuses(
    withPlugin({ type: "bridge", ipam: { type: "host\0local" } }),
    "plugins[0].ipam.type: 'ipam.type' contains a NUL byte",
  );
  // Every rule a type breaks is named.
  refuses(
    withPlugin({ type: "a/\0" }),
    `plugins[0].type: 'type' ${PLAIN}; plugins[0].type: 'type' contains a NUL byte`,
  );
  // The index names the plugin.
  refuses(
    list({ plugins: [{ type: "bridge" }, { type: "x/y" }] }),
    `plugins[1].type: 'type' ${PLAIN}`,
  );
});

Deno.test("rules: ipam is an optional object; its type is optional", () => {
  accepts(withPlugin({ type: "bridge", ipam: {} }));
  accepts(withPlugin({ type: "bridge", ipam: { subnet: "10.0.0.0/8" } }));
  for (const ipam of ["host-local", 1, null, true, [], [{ type: "x" }]]) {
    refuses(
      withPlugin({ type: "bridge", ipam }),
      "plugins[0].ipam: 'ipam' must be an object",
    );
  }
});

Deno.test("rules: capabilities map names to booleans", () => {
  const l = accepts(
    list({
      plugins: [
        {
          type: "bridge",
          capabilities: { mac: true, ips: false, "a.b": true },
        },
        { type: "portmap" },
        { type: "tuning", capabilities: {} },
      ],
    }),
  );
  assert.deepEqual(l.plugins[0].capabilities, {
    mac: true,
    ips: false,
    "a.b": true,
  });
  assert.deepEqual(l.plugins[1].capabilities, {});
  assert.deepEqual(l.plugins[2].capabilities, {});
  assert.ok(Object.isFrozen(l.plugins[0].capabilities));
  for (const capabilities of ["mac", 1, null, true, [], ["mac"]]) {
    refuses(
      withPlugin({ type: "bridge", capabilities }),
      "plugins[0].capabilities: 'capabilities' must map names to true/false",
    );
  }
  refuses(
    withPlugin({
      type: "bridge",
      capabilities: { mac: "true", ips: 1, bw: null, ok: true, pm: {} },
    }),
    "plugins[0].capabilities.mac: must be true or false; " +
      "plugins[0].capabilities.ips: must be true or false; " +
      "plugins[0].capabilities.bw: must be true or false; " +
      "plugins[0].capabilities.pm: must be true or false",
  );
  // A "__proto__" key never becomes the copy's prototype.
  const p = parseConfList(
    '{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"x",' +
      '"capabilities":{"__proto__":{"polluted":true},"mac":true}}]}',
  );
  assert.deepEqual(p.plugins[0].capabilities, { mac: true });
  assert.equal(
    Object.getPrototypeOf(p.plugins[0].capabilities),
    Object.prototype,
  );
  assert.equal(
    (p.plugins[0].capabilities as Record<string, unknown>).polluted,
    undefined,
  );
});

Deno.test("rules: unknown keys are kept, in conf and raw, exactly as written", () => {
  const plugin = {
    type: "bridge",
    bridge: "br0",
    mtu: 1400,
    ipam: { type: "host-local", ranges: [[{ subnet: "10.0.0.0/24" }]] },
    capabilities: { mac: true },
    runtimeConfig: { x: [1, { y: null }] },
  };
  const text = JSON.stringify(
    list({ plugins: [plugin], future: { a: 1 }, disableCheck: "false" }),
  );
  const l = parseConfList(text, "mem");
  assert.deepEqual(l.plugins[0].conf, plugin);
  assert.ok(Object.isFrozen(l.plugins[0].conf));
  assert.equal(l.raw, text);
  assert.deepEqual(JSON.parse(l.raw).future, { a: 1 });
  // An object input is copied: the caller's later changes do not leak in.
  const input = list({ plugins: [{ type: "bridge", mtu: 1 }] });
  const fromObj = parseConfList(input, "obj");
  (input.plugins as Record<string, unknown>[])[0].mtu = 2;
  assert.equal(fromObj.plugins[0].conf.mtu, 1);
});

Deno.test("rules: several problems are reported together, the first five, in field order", () => {
  refuses(
    {
      plugins: [{ type: "a/b", capabilities: { mac: 1 } }, { type: "" }],
      disableGC: "no",
      cniVersion: "x",
      name: "-n",
    },
    "'name' must start with a letter or digit and hold only letters, digits, '_', '.', '-'; " +
      "'cniVersion' must look like 1.0.0; " +
      "'disableGC' must be true or false; " +
      `plugins[0].type: 'type' ${PLAIN}; ` +
      "plugins[0].capabilities.mac: must be true or false",
  );
});

Deno.test("rules: messages never quote the offending values", () => {
  const secret = "hunter2";
  const bad: unknown[] = [
    list({ name: `${secret} x` }),
    list({ cniVersion: secret }),
    list({ cniVersions: [secret] }),
    list({ disableCheck: secret }),
    list({ plugins: [secret] }),
    withPlugin({ type: `/${secret}` }),
    withPlugin({ type: "bridge", ipam: { type: `../${secret}` } }),
    withPlugin({ type: "bridge", ipam: secret }),
    withPlugin({ type: "bridge", capabilities: secret }),
    withPlugin({ type: "bridge", capabilities: { mac: secret } }),
  ];
  for (const obj of bad) {
    assert.throws(
      () => parseConfList(JSON.stringify(obj), "mem"),
      (e: unknown) =>
        e instanceof CniConfigError && !e.message.includes(secret),
      JSON.stringify(obj),
    );
  }
});
