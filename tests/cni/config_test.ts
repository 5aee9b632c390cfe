import assert from "node:assert/strict";
import { join } from "node:path";
import {
  CniConfigError,
  loadConfDir,
  loadConfFile,
  MAX_CONFIG_BYTES,
  parseConf,
  parseConfList,
} from "../../src/cni/mod.ts";
import { withTempDir } from "./_helpers.ts";

const list = (name: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    cniVersion: "1.0.0",
    name,
    plugins: [{ type: "bridge", bridge: "br0" }],
    ...extra,
  });

Deno.test("loadConfDir: file-name order, default is first, .conf wrapped, others ignored", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(join(dir, "20-b.conflist"), list("bnet"));
    await Deno.writeTextFile(
      join(dir, "10-a.conf"),
      JSON.stringify({
        cniVersion: "0.4.0",
        name: "anet",
        type: "ptp",
        mtu: 1400,
      }),
    );
    await Deno.writeTextFile(
      join(dir, "30-c.json"),
      JSON.stringify({
        cniVersion: "1.0.0",
        name: "cnet",
        type: "macvlan",
      }),
    );
    await Deno.writeTextFile(join(dir, "05-ignored.txt"), list("ignored"));
    await Deno.mkdir(join(dir, "00-dir.conflist"));

    const set = await loadConfDir(dir);
    assert.deepEqual(set.errors, []);
    assert.deepEqual(set.networks.map((n) => n.name), ["anet", "bnet", "cnet"]);
    assert.equal(set.defaultNetwork?.name, "anet");
    assert.equal(set.findNetwork("bnet")?.source, join(dir, "20-b.conflist"));
    assert.equal(set.findNetwork("nope"), null);

    const a = set.findNetwork("anet")!;
    assert.equal(a.cniVersion, "0.4.0");
    assert.equal(a.plugins.length, 1);
    assert.equal(a.plugins[0].type, "ptp");
    assert.equal(a.plugins[0].conf.mtu, 1400);
    // The wrapped .conf is kept as the list JSON that will be used.
    const raw = JSON.parse(a.raw);
    assert.equal(raw.name, "anet");
    assert.equal(raw.plugins[0].type, "ptp");
    // A conflist's raw text is the file's text, byte for byte.
    assert.equal(set.findNetwork("bnet")!.raw, list("bnet"));
  });
});

Deno.test("loadConfDir: a broken file is reported by path and does not hide the good ones", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(join(dir, "10-broken.conflist"), "{ not json");
    await Deno.writeTextFile(
      join(dir, "20-noplugins.conflist"),
      JSON.stringify({ cniVersion: "1.0.0", name: "x", plugins: [] }),
    );
    await Deno.writeTextFile(join(dir, "30-good.conflist"), list("good"));
    const set = await loadConfDir(dir);
    assert.deepEqual(set.networks.map((n) => n.name), ["good"]);
    assert.equal(set.defaultNetwork?.name, "good");
    assert.equal(set.errors.length, 2);
    assert.ok(set.errors.every((e) => e instanceof CniConfigError));
    assert.equal(set.errors[0].source, join(dir, "10-broken.conflist"));
    assert.match(set.errors[0].message, /10-broken\.conflist: not valid JSON/);
    assert.equal(set.errors[1].source, join(dir, "20-noplugins.conflist"));
    assert.match(set.errors[1].reason, /'plugins' is empty/);
  });
});

Deno.test("a conflist that links to a secret file: the error never quotes its text", async () => {
  await withTempDir(async (dir) => {
    const secrets = join(dir, "secrets");
    const confDir = join(dir, "net.d");
    await Deno.mkdir(secrets);
    await Deno.mkdir(confDir);
    // What a link may point at: not JSON, JSON cut short, JSON of another kind.
    const targets = {
      "env": "password=hunter2\n",
      "truncated": '{"name": "n", "password": "hunter2"',
      "object": '{"password": "hunter2"}',
    };
    for (const [name, text] of Object.entries(targets)) {
      await Deno.writeTextFile(join(secrets, name), text);
      await Deno.symlink(
        join(secrets, name),
        join(confDir, `${name}.conflist`),
      );
      await Deno.symlink(join(secrets, name), join(confDir, `${name}.conf`));
    }
    const set = await loadConfDir(confDir);
    assert.deepEqual(set.networks, []);
    assert.equal(set.errors.length, 6);
    const leaks = (e: unknown) =>
      e instanceof Error &&
      [e.message, String(e), (e as CniConfigError).reason, String(e.cause)]
        .some((t) => t?.includes("hunter2"));
    for (const e of set.errors) {
      assert.ok(e instanceof CniConfigError);
      assert.ok(!leaks(e), `leaks the secret: ${e.message}`);
    }
    assert.match(
      set.errors.find((e) => e.source === join(confDir, "env.conflist"))!
        .message,
      /env\.conflist: not valid JSON/,
    );
    // The same through loadConfFile and parseConfList directly.
    await assert.rejects(
      () => loadConfFile(join(confDir, "env.conflist")),
      (e: unknown) => e instanceof CniConfigError && !leaks(e),
    );
    assert.throws(
      () => parseConfList(targets.env, "mem"),
      (e: unknown) =>
        e instanceof CniConfigError && !leaks(e) &&
        /mem: not valid JSON/.test(e.message),
    );
  });
});

Deno.test("loadConfDir: a missing directory gives no networks and no error", async () => {
  const set = await loadConfDir("/nonexistent/vmnic-cni-test");
  assert.deepEqual(set.networks, []);
  assert.deepEqual(set.errors, []);
  assert.equal(set.defaultNetwork, null);
});

Deno.test("loadConfDir: a file over 1 MiB is rejected by size", async () => {
  await withTempDir(async (dir) => {
    const big = JSON.stringify({
      cniVersion: "1.0.0",
      name: "big",
      plugins: [{ type: "bridge", pad: "x".repeat(MAX_CONFIG_BYTES) }],
    });
    await Deno.writeTextFile(join(dir, "big.conflist"), big);
    const set = await loadConfDir(dir);
    assert.equal(set.networks.length, 0);
    assert.match(set.errors[0].reason, /larger than the 1048576 allowed/);
  });
});

Deno.test("parseConfList: rejects what libcni would not run, with clear messages", () => {
  const bad: [unknown, RegExp][] = [
    [{ cniVersion: "1.0.0", plugins: [{ type: "bridge" }] }, /missing 'name'/],
    [{ name: "n", plugins: [{ type: "bridge" }] }, /missing 'cniVersion'/],
    [{ name: "n", cniVersion: "1.0.0" }, /missing 'plugins'/],
    [{ name: "n", cniVersion: "1.0.0", plugins: [] }, /'plugins' is empty/],
    [
      { name: "n", cniVersion: "1.0.0", plugins: [{ mtu: 1 }] },
      /plugins\[0\]\.type: missing 'type'/,
    ],
    [
      { name: "n", cniVersion: "1.0.0", plugins: [{ type: 7 }] },
      /'type' must be a string/,
    ],
    [
      { name: "n", cniVersion: "1.0.0", plugins: [{ type: "../../bin/sh" }] },
      /plain executable name/,
    ],
    [
      { name: "n", cniVersion: "1.0.0", plugins: [{ type: "/bin/sh" }] },
      /plain executable name/,
    ],
    [
      { name: "n", cniVersion: "1.0.0", plugins: [{ type: "a..b" }] },
      /plain executable name/,
    ],
    [
      { name: "bad name", cniVersion: "1.0.0", plugins: [{ type: "x" }] },
      /'name' must start/,
    ],
    [
      { name: "n", cniVersion: "one", plugins: [{ type: "x" }] },
      /'cniVersion' must look like 1\.0\.0/,
    ],
    [
      { name: "n", cniVersion: "9.0.0", plugins: [{ type: "x" }] },
      /cniVersion 9\.0\.0 is not supported/,
    ],
    [[1, 2], /top level must be a JSON object/],
    // The plugin execs its IPAM plugin from the bin path: a plain name only.
    [
      {
        name: "n",
        cniVersion: "1.0.0",
        plugins: [{ type: "bridge", ipam: { type: "../sh" } }],
      },
      /plugins\[0\]\.ipam\.type: 'ipam\.type' must be a plain executable name/,
    ],
    [
      {
        name: "n",
        cniVersion: "1.0.0",
        plugins: [{ type: "bridge", ipam: { type: "/bin/sh" } }],
      },
      /'ipam\.type' must be a plain executable name/,
    ],
    [
      {
        name: "n",
        cniVersion: "1.0.0",
        plugins: [{ type: "bridge", ipam: { type: "" } }],
      },
      /'ipam\.type' is empty/,
    ],
    [
      {
        name: "n",
        cniVersion: "1.0.0",
        plugins: [{ type: "bridge", ipam: "host-local" }],
      },
      /'ipam' must be an object/,
    ],
  ];
  for (const [obj, re] of bad) {
    assert.throws(
      () => parseConfList(JSON.stringify(obj), "mem"),
      (e: unknown) =>
        e instanceof CniConfigError && e.source === "mem" && re.test(e.message),
      `${JSON.stringify(obj)} should fail with ${re}`,
    );
  }
});

Deno.test("parseConfList: absurdly deep JSON is rejected before parsing, text and object", () => {
  const deep = `{"name":"n","cniVersion":"1.0.0","plugins":[{"type":"x","a":${
    "[".repeat(100_000)
  }${"]".repeat(100_000)}}]}`;
  assert.throws(
    () => parseConfList(deep, "deep"),
    /nested deeper than 64 levels/,
  );
  let obj: Record<string, unknown> = {};
  const root = {
    name: "n",
    cniVersion: "1.0.0",
    plugins: [{ type: "x", a: obj }],
  };
  for (let i = 0; i < 100; i++) {
    const next = {};
    obj.n = next;
    obj = next;
  }
  assert.throws(
    () => parseConfList(root, "deep-obj"),
    /nested deeper than 64 levels/,
  );
  // Brackets inside strings do not count.
  const ok = parseConfList(
    JSON.stringify({
      name: "n",
      cniVersion: "1.0.0",
      plugins: [{ type: "x", s: "[".repeat(200) }],
    }),
  );
  assert.equal(ok.plugins[0].conf.s, "[".repeat(200));
});

Deno.test("parseConfList: objects, flags, capabilities and cniVersions selection", () => {
  const l = parseConfList({
    name: "mem",
    cniVersion: "0.4.0",
    cniVersions: ["0.4.0", "1.0.0", "7.0.0"],
    disableCheck: "true",
    plugins: [
      { type: "bridge", capabilities: { mac: true, ips: false } },
      { type: "portmap", capabilities: { portMappings: true } },
    ],
  }, "embedded");
  assert.equal(l.source, "embedded");
  assert.equal(l.cniVersion, "1.0.0"); // highest supported of cniVersions
  assert.equal(l.disableCheck, true);
  assert.equal(l.disableGC, false);
  assert.deepEqual(l.plugins[0].capabilities, { mac: true, ips: false });
  assert.deepEqual(JSON.parse(l.raw).plugins[1], {
    type: "portmap",
    capabilities: { portMappings: true },
  });
  assert.throws(
    () =>
      parseConfList({
        name: "n",
        cniVersion: "1.0.0",
        plugins: [{ type: "x", capabilities: { mac: "yes" } }],
      }),
    /plugins\[0\]\.capabilities\.mac: must be true or false/,
  );
});

Deno.test("parseConf: single plugin wrapped; a list in a .conf is pointed to .conflist", () => {
  const l = parseConf(
    `{"cniVersion":"1.0.0","name":"single","type":"loopback"}`,
    "x.conf",
  );
  assert.equal(l.name, "single");
  assert.deepEqual(l.plugins.map((p) => p.type), ["loopback"]);
  assert.throws(
    () => parseConf(list("l"), "y.conf"),
    /belongs in a \.conflist file/,
  );
  assert.throws(
    () => parseConf(`{"cniVersion":"1.0.0","name":"n","type":"a/b"}`, "z.conf"),
    /plain executable name/,
  );
});
