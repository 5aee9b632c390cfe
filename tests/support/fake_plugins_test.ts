/**
 * FakePlugins behave like Debian's bridge + host-local for what vmnic uses:
 * CniRuntime runs its chains over them and the FakeKernel, and the veth,
 * the bridge and the lease come and go as with the real plugins.
 */
import assert from "node:assert/strict";
import {
  CniExecError,
  CniPluginError,
  CniPluginNotFoundError,
  CniRuntime,
  CniVersionError,
  type NetworkConfigList,
  parseConfList,
  type RuntimeConf,
} from "../../src/cni/mod.ts";
import {
  inspectNic,
  plumbNic,
  restoreVethAddrs,
  unplumbNic,
} from "../../src/wiring/nic.ts";
import { FakeKernel, HOST_NETNS } from "./fake_kernel.ts";
import {
  CniErrorCode,
  DEFAULT_SUPPORTED_VERSIONS,
  type FakePluginFailure,
  FakePlugins,
} from "./fake_plugins.ts";

const BIN = ["/fake/cni/bin"];
const NETNS_DIR = "/run/vmnic-fake/netns";
const BRIDGE = "vmbr0";
const NETWORK = "testnet";

function conflist(
  opts: { extra?: object[]; version?: string; ipsCap?: boolean } = {},
): NetworkConfigList {
  return parseConfList({
    cniVersion: opts.version ?? "1.0.0",
    name: NETWORK,
    plugins: [{
      type: "bridge",
      bridge: BRIDGE,
      isGateway: true,
      ...(opts.ipsCap ?? true ? { capabilities: { ips: true } } : {}),
      ipam: {
        type: "host-local",
        ranges: [[{ subnet: "10.77.0.0/16" }]],
        routes: [{ dst: "0.0.0.0/0" }],
        dataDir: "/fake/ipam",
      },
    }, ...(opts.extra ?? [])],
  });
}

function setup(opts: { versions?: readonly string[] } = {}) {
  const kernel = new FakeKernel();
  const plugins = new FakePlugins(kernel, {
    supportedVersions: opts.versions,
  });
  const cni = new CniRuntime({ exec: plugins, binDirs: BIN });
  /** A VM's attachment: its own netns, container id = VM id. */
  const vm = (id: string, extra: Partial<RuntimeConf> = {}): RuntimeConf => ({
    containerId: id,
    netns: kernel.ensureNetns(id, NETNS_DIR).path,
    ifName: "eth0",
    ...extra,
  });
  return { kernel, plugins, cni, vm };
}

Deno.test("ADD makes the bridge, the veth and the lease; DEL takes them away, twice harmlessly", async () => {
  const { kernel, plugins, cni, vm } = setup();
  const list = conflist();
  const rt = vm("c1");
  const result = await cni.addNetworkList(list, rt);

  const [br, host, cont] = result.interfaces;
  assert.equal(br.name, BRIDGE);
  assert.match(host.name, /^veth[0-9a-f]{8}$/);
  assert.equal(host.sandbox, undefined);
  assert.deepEqual([cont.name, cont.sandbox], ["eth0", rt.netns]);
  assert.deepEqual(result.ips, [{
    address: "10.77.0.2/16",
    gateway: "10.77.0.1",
    interface: 2,
  }]);
  assert.deepEqual(result.routes, [{ dst: "0.0.0.0/0" }]);

  const eth0 = kernel.link(rt.netns, "eth0")!;
  const hostEnd = kernel.link(HOST_NETNS, host.name)!;
  const bridge = kernel.link(HOST_NETNS, BRIDGE)!;
  assert.deepEqual([eth0.kind, eth0.up, eth0.running], ["veth", true, true]);
  assert.equal(eth0.mac, cont.mac);
  assert.equal(eth0.peer!.index, hostEnd.index);
  assert.equal(hostEnd.master, bridge.index);
  assert.ok(
    kernel.addrs(rt.netns, "eth0").some((a) => a.cidr === "10.77.0.2/16"),
  );
  assert.deepEqual(
    kernel.addrs(HOST_NETNS, BRIDGE).filter((a) => a.family === 4).map((a) =>
      a.cidr
    ),
    ["10.77.0.1/16"],
    "isGateway puts the gateway on the bridge",
  );
  assert.deepEqual(plugins.leases(), [{
    network: NETWORK,
    address: "10.77.0.2",
    containerId: "c1",
    ifName: "eth0",
  }]);
  assert.equal(await cni.checkNetworkList(list, rt, result), "done");

  await cni.delNetworkList(list, rt, result);
  assert.equal(kernel.link(rt.netns, "eth0"), null);
  assert.equal(kernel.link(HOST_NETNS, host.name), null, "the host end too");
  assert.ok(kernel.link(HOST_NETNS, BRIDGE), "the bridge stays");
  assert.deepEqual(plugins.leases(), []);
  await cni.delNetworkList(list, rt, result);
  await cni.delNetworkList(list, { ...rt, netns: "" }, null);
  assert.deepEqual(
    plugins.calls.map((c) => `${c.command} ${c.type} ${c.ok}`),
    [
      "VERSION bridge true",
      "ADD bridge true",
      "CHECK bridge true",
      "DEL bridge true",
      "DEL bridge true",
      "DEL bridge true",
    ],
  );
  assert.deepEqual(plugins.callsOf("DEL")[0].containerAddrs, ["10.77.0.2/16"]);
});

Deno.test("host-local: round robin, requested addresses, refusals with its own words", async () => {
  const { plugins, cni, vm } = setup();
  const list = conflist();
  const noCap = conflist({ ipsCap: false });
  const ip = async (rt: RuntimeConf, l = list) =>
    (await cni.addNetworkList(l, rt)).ips[0].address;

  assert.equal(await ip(vm("c1")), "10.77.0.2/16");
  assert.equal(await ip(vm("c2")), "10.77.0.3/16");
  await cni.delNetworkList(list, vm("c1"));
  assert.equal(await ip(vm("c3")), "10.77.0.4/16", "no reuse at once");
  assert.equal(
    await ip(vm("c4", { capabilityArgs: { ips: ["10.77.0.2/16"] } })),
    "10.77.0.2/16",
    "runtimeConfig.ips",
  );
  assert.equal(
    await ip(
      vm("c5", { args: [["IgnoreUnknown", "1"], ["IP", "10.77.0.9"]] }),
      noCap,
    ),
    "10.77.0.9/16",
    "CNI_ARGS IP=",
  );

  const refused = async (rt: RuntimeConf, re: RegExp, l = list) => {
    await assert.rejects(cni.addNetworkList(l, rt), (e) => {
      assert.ok(e instanceof CniPluginError);
      assert.equal(e.code, CniErrorCode.INTERNAL);
      assert.match(e.msg, re);
      return true;
    });
    assert.ok(
      !plugins.leases().some((l) => l.containerId === rt.containerId),
      "nothing leased",
    );
  };
  await refused(
    vm("c6", { capabilityArgs: { ips: ["10.77.0.9/16"] } }),
    /requested IP address 10\.77\.0\.9 is not available in range set 10\.77\.0\.1-10\.77\.255\.254/,
  );
  await refused(
    vm("c7", { capabilityArgs: { ips: ["10.77.0.1"] } }),
    /is subnet's gateway/,
  );
  await refused(
    vm("c8", { capabilityArgs: { ips: ["10.78.0.1"] } }),
    /failed to allocate all requested IPs: 10\.78\.0\.1/,
  );
  await refused(
    vm("c9", { args: [["IP", "10.77.0.10"]] }),
    /ARGS: unknown args \["IP"\]/,
    noCap,
  );
  // The runtime's rollback DEL removed each failed attempt's veth.
  for (const id of ["c6", "c7", "c8", "c9"]) {
    assert.deepEqual(
      plugins.callsOf("DEL").filter((c) => c.containerId === id).length,
      1,
    );
  }
});

Deno.test("ADD into a netns whose eth0 exists: refused, and the rollback DEL takes the old attachment", async () => {
  // Why vmnic refuses a foreign eth0 before CNI ADD: the real plugins do this.
  const { kernel, plugins, cni, vm } = setup();
  const list = conflist();
  const rt = vm("c1");
  await cni.addNetworkList(list, rt);
  await assert.rejects(
    cni.addNetworkList(list, rt),
    (e) =>
      e instanceof CniPluginError &&
      /container veth name provided \(eth0\) already exists/.test(e.msg),
  );
  assert.equal(kernel.link(rt.netns, "eth0"), null);
  assert.deepEqual(plugins.leases(), []);
});

Deno.test("VERSION: a 1.1.0 list is refused until the plugins speak it; then STATUS and GC run", async () => {
  const { kernel, plugins, cni, vm } = setup();
  const list = conflist({ version: "1.1.0" });
  await assert.rejects(cni.addNetworkList(list, vm("c1")), CniVersionError);
  assert.deepEqual(plugins.calls.map((c) => c.command), ["VERSION"]);

  const before = await plugins.identity("/fake/cni/bin/bridge");
  plugins.setSupportedVersions([...DEFAULT_SUPPORTED_VERSIONS, "1.1.0"]);
  assert.notEqual(await plugins.identity("/fake/cni/bin/bridge"), before);
  const cni2 = new CniRuntime({ exec: plugins, binDirs: BIN });
  assert.deepEqual(await cni2.versionInfo("bridge"), {
    cniVersion: "1.1.0",
    supportedVersions: [...DEFAULT_SUPPORTED_VERSIONS, "1.1.0"],
  });
  const rt = vm("c1");
  await cni2.addNetworkList(list, rt);
  assert.equal(await cni2.getStatus(list), "ok");
  assert.equal(plugins.leases().length, 1);
  assert.deepEqual(await cni2.gcNetworkList(list, []), {
    plugins: "done",
    staleDeleted: [],
  });
  assert.deepEqual(plugins.leases(), [], "GC released the unlisted lease");
  assert.ok(kernel.link(rt.netns, "eth0"), "GC touches leases only");
  // A list at 0.4.0 gets a 0.4.0 result (ips with a version), converted by the runtime.
  const old = await cni2.addNetworkList(
    conflist({ version: "0.4.0" }),
    vm("c2"),
  );
  assert.equal(old.cniVersion, "1.0.0");
  assert.equal(old.ips[0].address, "10.77.0.3/16");
});

Deno.test("an unknown plugin type: not found before anything runs; installed, it passes results on", async () => {
  const { kernel, plugins, cni, vm } = setup();
  const list = conflist({ extra: [{ type: "portmap" }] });
  const rt = vm("c1");
  await assert.rejects(cni.addNetworkList(list, rt), CniPluginNotFoundError);
  assert.deepEqual(plugins.calls, []);
  assert.deepEqual(kernel.links(rt.netns).map((l) => l.name), ["lo"]);
  plugins.install("portmap");
  const result = await cni.addNetworkList(list, rt);
  assert.equal(result.ips[0].address, "10.77.0.2/16");
  plugins.uninstall("portmap");
  await assert.rejects(cni.delNetworkList(list, rt), CniPluginNotFoundError);
});

Deno.test("failNext: each failure as the runtime reports it; the rollback DEL cleans up", async (t) => {
  const cases: [FakePluginFailure, (e: unknown) => boolean][] = [
    [
      "plugin-error",
      (e) =>
        e instanceof CniPluginError && e.code === CniErrorCode.TRY_AGAIN_LATER,
    ],
    ["crash", (e) => e instanceof CniExecError && e.kind === "no-output"],
    ["timeout", (e) => e instanceof CniExecError && e.kind === "timeout"],
    [
      "garbage",
      (e) => e instanceof CniExecError && e.kind === "invalid-output",
    ],
  ];
  for (const [error, check] of cases) {
    await t.step(error, async () => {
      const { kernel, plugins, cni, vm } = setup();
      const list = conflist({ extra: [{ type: "noop" }] });
      const rt = vm("c1");
      plugins.failNext({
        type: "noop",
        command: "ADD",
        error,
        code: CniErrorCode.TRY_AGAIN_LATER,
      });
      await assert.rejects(cni.addNetworkList(list, rt), check);
      assert.equal(kernel.link(rt.netns, "eth0"), null);
      assert.deepEqual(plugins.leases(), []);
      assert.deepEqual(
        plugins.calls.filter((c) => c.command !== "VERSION").map((c) =>
          `${c.command} ${c.type}`
        ),
        ["ADD bridge", "ADD noop", "DEL noop", "DEL bridge"],
      );
    });
  }

  await t.step("after the plugin did its work", async () => {
    const { kernel, plugins, cni, vm } = setup();
    const rt = vm("c1");
    plugins.failNext({
      type: "bridge",
      command: "ADD",
      error: "timeout",
      afterEffect: true,
    });
    await assert.rejects(cni.addNetworkList(conflist(), rt), CniExecError);
    const del = plugins.callsOf("DEL")[0];
    assert.deepEqual(del.containerAddrs, ["10.77.0.2/16"], "the veth was made");
    assert.equal(kernel.link(rt.netns, "eth0"), null);
    assert.deepEqual(plugins.leases(), []);
  });

  await t.step("a failed DEL keeps everything for the retry", async () => {
    const { kernel, plugins, cni, vm } = setup();
    const list = conflist();
    const rt = vm("c1");
    await cni.addNetworkList(list, rt);
    plugins.failNext({ type: "bridge", command: "DEL" });
    await assert.rejects(cni.delNetworkList(list, rt), CniPluginError);
    assert.ok(kernel.link(rt.netns, "eth0"));
    assert.equal(plugins.leases().length, 1);
    await cni.delNetworkList(list, rt);
    assert.deepEqual(plugins.leases(), []);
  });
});

Deno.test("the fail plugin refuses what its config lists", async () => {
  const { kernel, plugins, cni, vm } = setup();
  const list = conflist({
    extra: [{ type: "fail", failOn: ["ADD"], errorMsg: "no way" }],
  });
  const rt = vm("c1");
  await assert.rejects(
    cni.addNetworkList(list, rt),
    (e) =>
      e instanceof CniPluginError && e.plugin === "fail" && e.msg === "no way",
  );
  assert.equal(kernel.link(rt.netns, "eth0"), null);
  assert.deepEqual(plugins.leases(), []);
});

Deno.test("CHECK fails when the veth is gone, its MAC changed, or the lease released", async () => {
  const { kernel, plugins, cni, vm } = setup();
  const list = conflist();
  const check = async (rt: RuntimeConf, re: RegExp, result: object) =>
    await assert.rejects(
      cni.checkNetworkList(list, rt, result as never),
      (e) => e instanceof CniPluginError && re.test(e.msg),
    );

  const a = vm("c1");
  const ra = await cni.addNetworkList(list, a);
  kernel.setLinkMac(a.netns, "eth0", "02:00:00:00:00:99");
  await check(a, /Mac .* doesn't match container Mac: 02:00:00:00:00:99/, ra);
  kernel.deleteLink(a.netns, "eth0");
  await check(a, /Container Interface name in prevResult: eth0 not found/, ra);

  const b = vm("c2");
  const rb = await cni.addNetworkList(list, b);
  plugins.ipam.release(NETWORK, { dataDir: "/fake/ipam" }, "c2", "eth0");
  await check(
    b,
    /host-local: Failed to find address added by container c2/,
    rb,
  );
});

Deno.test("skel checks: env (4), config (6), version (1)", async () => {
  const { plugins } = setup();
  const req = (command: string, stdin: string, env: Record<string, string>) =>
    plugins.exec({
      path: "/fake/cni/bin/bridge",
      pluginType: "bridge",
      command,
      stdin,
      env: { CNI_COMMAND: command, CNI_PATH: BIN[0], ...env },
      timeoutMs: 1000,
    });
  const code = (n: number) => (e: unknown) =>
    e instanceof CniPluginError && e.code === n;
  const conf = JSON.stringify({
    cniVersion: "1.0.0",
    name: "n",
    type: "bridge",
  });
  await assert.rejects(
    req("ADD", conf, { CNI_CONTAINERID: "c", CNI_IFNAME: "eth0" }),
    (e) =>
      code(CniErrorCode.INVALID_ENV)(e) &&
      /\[CNI_NETNS\] missing/.test((e as CniPluginError).msg),
  );
  const env = { CNI_CONTAINERID: "c", CNI_IFNAME: "eth0", CNI_NETNS: "/x" };
  await assert.rejects(
    req("ADD", "{", env),
    code(CniErrorCode.DECODING_FAILURE),
  );
  await assert.rejects(
    req("ADD", JSON.stringify({ cniVersion: "1.1.0", name: "n" }), env),
    code(CniErrorCode.INCOMPATIBLE_VERSION),
  );
  await assert.rejects(
    req("ADD", conf, env),
    (e) =>
      e instanceof CniPluginError && /failed to open netns "\/x"/.test(e.msg),
  );
  await assert.rejects(req("FROB", conf, env), code(CniErrorCode.INVALID_ENV));
});

Deno.test("the wiring over an attachment: plumb, restore addresses, DEL sees them", async () => {
  const { kernel, plugins, cni, vm } = setup();
  const list = conflist();
  const rt = vm("c1");
  const result = await cni.addNetworkList(list, rt);
  assert.ok(
    kernel.addrs(rt.netns, "eth0").some((a) => a.address.startsWith("fe80::")),
    "the veth came up with a link-local address",
  );
  const plumbed = kernel.inNetns(
    rt.netns,
    (s) => plumbNic(s, { veth: "eth0", tap: "tap0", queues: 1 }),
  );
  assert.equal(plumbed.mac, result.interfaces[2].mac);
  const state = kernel.inNetns(
    rt.netns,
    (s) => inspectNic(s.conn, { veth: "eth0", tap: "tap0" }),
  );
  assert.deepEqual([state.wired, state.vethAddrs], [true, []]);
  assert.equal(
    state.peerIndex,
    kernel.link(HOST_NETNS, result.interfaces[1].name)!.index,
  );
  // What verify's CNI CHECK gives: the result without the moved addresses.
  assert.equal(
    await cni.checkNetworkList(list, rt, { ...result, ips: [], routes: [] }),
    "done",
  );
  kernel.inNetns(rt.netns, (s) => {
    unplumbNic(s.conn, { veth: "eth0", tap: "tap0" });
    restoreVethAddrs(s.conn, "eth0", ["10.77.0.2/16"]);
  });
  await cni.delNetworkList(list, rt, result);
  assert.deepEqual(plugins.callsOf("DEL")[0].containerAddrs, ["10.77.0.2/16"]);
  assert.deepEqual(kernel.links(rt.netns).map((l) => l.name), ["lo"]);
});
