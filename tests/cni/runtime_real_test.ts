/**
 * CniRuntime with Debian's real plugins (/usr/lib/cni), each test in its own
 * container netns; the "host" side is this test process's netns, which the
 * test task made with `unshare --net`. host-local always writes to a temp
 * dataDir; subnets are private (10.233.x.0/24, fd00:233:x::/64).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  CniPluginError,
  CniRuntime,
  CniVersionError,
  FileAttachmentCache,
  loadConfDir,
  type NetworkConfigList,
  parseConfList,
  type RuntimeConf,
} from "../../src/cni/mod.ts";
import {
  ipJson,
  rootTest,
  run,
  sh,
  tcJson,
  uniquePrefix,
  withScratchNetns,
} from "../support/harness.ts";
import {
  bridgePlugins,
  deleteLink,
  FAKE_VERSIONS,
  linkName,
  probe,
  REAL_BIN,
  reservedIps,
  withTempDir,
  writeFakePlugin,
} from "./_helpers.ts";

interface Env {
  /** Container netns name and path. */
  nsName: string;
  ns: string;
  dir: string;
  dataDir: string;
  /** A unique link name for this test's bridge (or dummy parent). */
  br: string;
  cache: FileAttachmentCache;
  runtime: CniRuntime;
  rt: RuntimeConf;
  /** A 1.0.0 list named `net` with the given plugins. */
  list: (plugins: object[], version?: string) => NetworkConfigList;
}

const NET = "vmnictest";

/** A container netns, temp dirs and a runtime; removes the link `br` after. */
async function withEnv(
  tag: string,
  fn: (e: Env) => Promise<void>,
  opts: { binDirs?: string[] } = {},
): Promise<void> {
  const prefix = uniquePrefix(tag);
  const br = linkName(tag);
  await withTempDir(async (dir) => {
    try {
      await withScratchNetns(prefix, ["c"], async ([ns]) => {
        const cache = new FileAttachmentCache(join(dir, "cache"));
        const runtime = new CniRuntime({
          binDirs: opts.binDirs ?? [REAL_BIN],
          cache,
          timeoutMs: 30_000,
        });
        await fn({
          nsName: `${prefix}c`,
          ns,
          dir,
          dataDir: join(dir, "ipam"),
          br,
          cache,
          runtime,
          rt: {
            containerId: `${prefix}c`.replace(/-$/, ""),
            netns: ns,
            ifName: "eth0",
          },
          list: (plugins, version = "1.0.0") =>
            parseConfList(
              { cniVersion: version, name: NET, plugins },
              `test ${tag}`,
            ),
        });
      });
    } finally {
      await deleteLink(br);
    }
  });
}

interface AddrInfo {
  family: string;
  local: string;
  prefixlen: number;
  scope: string;
}

/** Global addresses of `dev` in netns `ns`, as `addr/prefix`. */
async function addrsIn(ns: string, dev: string): Promise<string[]> {
  const links = await ipJson<{ addr_info: AddrInfo[] }>(
    "-n",
    ns,
    "addr",
    "show",
    "dev",
    dev,
  );
  return links.flatMap((l) => l.addr_info)
    .filter((a) => a.scope === "global")
    .map((a) => `${a.local}/${a.prefixlen}`).sort();
}

async function linkExists(dev: string, ns?: string): Promise<boolean> {
  const args = ns
    ? ["-n", ns, "link", "show", "dev", dev]
    : ["link", "show", "dev", dev];
  return (await run("ip", args)).code === 0;
}

function resultAddrs(r: { ips: { address: string }[] }): string[] {
  return r.ips.map((i) => i.address).sort();
}

rootTest(
  "bridge + host-local IPv4: ADD gives eth0 its IP, CHECK passes, DEL releases it",
  async () => {
    await withEnv("br4", async (e) => {
      const list = e.list(
        bridgePlugins(e.br, e.dataDir, [[{ subnet: "10.233.1.0/24" }]]),
      );
      const result = await e.runtime.addNetworkList(list, e.rt);

      assert.equal(result.cniVersion, "1.0.0");
      assert.equal(result.ips.length, 1);
      assert.match(result.ips[0].address, /^10\.233\.1\.\d+\/24$/);
      assert.equal(result.ips[0].gateway, "10.233.1.1");
      const eth0 = result.interfaces[result.ips[0].interface!];
      assert.equal(eth0.name, "eth0");
      assert.equal(eth0.sandbox, e.ns);
      assert.deepEqual(await addrsIn(e.nsName, "eth0"), [
        result.ips[0].address,
      ]);
      const [link] = await ipJson<{ address: string }>(
        "-n",
        e.nsName,
        "link",
        "show",
        "eth0",
      );
      assert.equal(link.address, eth0.mac);
      const ip = result.ips[0].address.split("/")[0];
      assert.deepEqual(await reservedIps(e.dataDir, NET), [ip]);
      const key = {
        network: NET,
        containerId: e.rt.containerId,
        ifName: "eth0",
      };
      assert.deepEqual((await e.cache.get(key))?.result, result);

      assert.equal(await e.runtime.checkNetworkList(list, e.rt), "done");

      await e.runtime.delNetworkList(list, e.rt);
      assert.deepEqual(await reservedIps(e.dataDir, NET), []);
      assert.equal(await linkExists("eth0", e.nsName), false);
      assert.equal(await e.cache.get(key), null);
      // DEL is idempotent.
      await e.runtime.delNetworkList(list, e.rt);
    });
  },
);

rootTest(
  "bridge + host-local dual stack: IPv4 and IPv6 in the result and on eth0",
  async () => {
    await withEnv("br6", async (e) => {
      const list = e.list(bridgePlugins(e.br, e.dataDir, [
        [{ subnet: "10.233.2.0/24" }],
        [{ subnet: "fd00:233:2::/64" }],
      ]));
      const result = await e.runtime.addNetworkList(list, e.rt);
      const addrs = resultAddrs(result);
      assert.equal(addrs.length, 2);
      assert.match(addrs[0], /^10\.233\.2\.\d+\/24$/);
      assert.match(addrs[1], /^fd00:233:2::[0-9a-f]+\/64$/);
      assert.deepEqual(await addrsIn(e.nsName, "eth0"), addrs);
      assert.equal(await e.runtime.checkNetworkList(list, e.rt), "done");
      await e.runtime.delNetworkList(list, e.rt);
      assert.deepEqual(await reservedIps(e.dataDir, NET), []);
      assert.equal(await linkExists("eth0", e.nsName), false);
    });
  },
);

rootTest(
  "ptp: a veth pair with the IP in the netns and the host end in ours",
  async () => {
    await withEnv("ptp", async (e) => {
      const list = e.list([{
        type: "ptp",
        ipMasq: false,
        ipam: {
          type: "host-local",
          ranges: [[{ subnet: "10.233.3.0/24" }]],
          dataDir: e.dataDir,
        },
      }]);
      const result = await e.runtime.addNetworkList(list, e.rt);
      assert.deepEqual(await addrsIn(e.nsName, "eth0"), resultAddrs(result));
      const host = result.interfaces.find((i) => !i.sandbox);
      assert.ok(host, "ptp reports the host-side veth");
      assert.equal(await linkExists(host.name), true);
      assert.equal(await e.runtime.checkNetworkList(list, e.rt), "done");
      await e.runtime.delNetworkList(list, e.rt);
      assert.equal(await linkExists(host.name), false);
      assert.equal(await linkExists("eth0", e.nsName), false);
      assert.deepEqual(await reservedIps(e.dataDir, NET), []);
    });
  },
);

rootTest(
  "macvlan on a dummy parent (a veth end where this kernel has no dummy)",
  async () => {
    await withEnv("mv", async (e) => {
      // The parent only has to exist and be up; a kernel without the dummy
      // driver gets a veth end instead.
      if (!(await probe("ip", "link", "add", e.br, "type", "dummy"))) {
        await sh(
          "ip",
          "link",
          "add",
          e.br,
          "type",
          "veth",
          "peer",
          "name",
          `${e.br}p`.slice(-15),
        );
      }
      await sh("ip", "link", "set", e.br, "up");
      const list = e.list([{
        type: "macvlan",
        master: e.br,
        mode: "bridge",
        ipam: {
          type: "host-local",
          ranges: [[{ subnet: "10.233.4.0/24" }]],
          dataDir: e.dataDir,
        },
      }]);
      const result = await e.runtime.addNetworkList(list, e.rt);
      const [link] = await ipJson<{ linkinfo: { info_kind: string } }>(
        "-n",
        e.nsName,
        "-d",
        "link",
        "show",
        "eth0",
      );
      assert.equal(link.linkinfo.info_kind, "macvlan");
      assert.deepEqual(await addrsIn(e.nsName, "eth0"), resultAddrs(result));
      await e.runtime.delNetworkList(list, e.rt);
      assert.equal(await linkExists("eth0", e.nsName), false);
      assert.deepEqual(await reservedIps(e.dataDir, NET), []);
    });
  },
);

rootTest("loopback brings lo up in the netns", async () => {
  await withEnv("lo", async (e) => {
    const flags = async () =>
      (await ipJson<{ flags: string[] }>("-n", e.nsName, "link", "show", "lo"))[
        0
      ].flags;
    assert.ok(!(await flags()).includes("UP"));
    const list = e.list([{ type: "loopback" }]);
    const result = await e.runtime.addNetworkList(list, e.rt);
    assert.ok((await flags()).includes("UP"));
    assert.equal(result.interfaces[0]?.name, "lo");
    await e.runtime.delNetworkList(list, e.rt);
    assert.ok(!(await flags()).includes("UP"));
  });
});

rootTest(
  "tuning sets the MAC from the mac capability; capability args reach only declaring plugins",
  async () => {
    await withEnv("tun", async (e) => {
      const mac = "0a:58:0a:e9:05:42";
      const list = e.list([
        ...bridgePlugins(e.br, e.dataDir, [[{ subnet: "10.233.5.0/24" }]]),
        { type: "tuning", capabilities: { mac: true } },
      ]);
      const result = await e.runtime.addNetworkList(list, {
        ...e.rt,
        capabilityArgs: { mac },
      });
      const [link] = await ipJson<{ address: string }>(
        "-n",
        e.nsName,
        "link",
        "show",
        "eth0",
      );
      assert.equal(link.address, mac);
      assert.equal(result.interfaces.find((i) => i.name === "eth0")?.mac, mac);
      assert.equal(
        await e.runtime.checkNetworkList(list, {
          ...e.rt,
          capabilityArgs: { mac },
        }),
        "done",
      );
      await e.runtime.delNetworkList(list, e.rt);
      assert.deepEqual(await reservedIps(e.dataDir, NET), []);
    });
  },
);

rootTest("the ips capability asks host-local for a given IP", async () => {
  await withEnv("ips", async (e) => {
    const list = e.list(
      bridgePlugins(e.br, e.dataDir, [[{ subnet: "10.233.12.0/24" }]], {
        capabilities: { ips: true },
      }),
    );
    const result = await e.runtime.addNetworkList(list, {
      ...e.rt,
      capabilityArgs: { ips: ["10.233.12.50/24"] },
    });
    assert.deepEqual(resultAddrs(result), ["10.233.12.50/24"]);
    assert.deepEqual(await addrsIn(e.nsName, "eth0"), ["10.233.12.50/24"]);
    await e.runtime.delNetworkList(list, e.rt);
    assert.deepEqual(await reservedIps(e.dataDir, NET), []);
  });
});

rootTest(
  "recovery args IgnoreUnknown=1;IP=... give back the same IP with host-local",
  async () => {
    await withEnv("rec", async (e) => {
      const list = e.list(
        bridgePlugins(e.br, e.dataDir, [[{ subnet: "10.233.6.0/24" }]]),
      );
      const first = await e.runtime.addNetworkList(list, e.rt);
      const ip = first.ips[0].address.split("/")[0];
      await e.runtime.delNetworkList(list, e.rt);
      // Another container takes the next free address meanwhile...
      const other = {
        ...e.rt,
        containerId: `${e.rt.containerId}x`,
        ifName: "eth1",
      };
      const second = await e.runtime.addNetworkList(list, other);
      assert.notEqual(second.ips[0].address, first.ips[0].address);
      // ...and recovery still gets the original one back.
      const args: [string, string][] = [["IgnoreUnknown", "1"], ["IP", ip]];
      const again = await e.runtime.addNetworkList(list, { ...e.rt, args });
      assert.equal(again.ips[0].address, first.ips[0].address);
      assert.deepEqual(await addrsIn(e.nsName, "eth0"), [first.ips[0].address]);
      const cached = await e.cache.get({
        network: NET,
        containerId: e.rt.containerId,
        ifName: "eth0",
      });
      assert.deepEqual(cached?.args, args);
      await e.runtime.delNetworkList(list, e.rt);
      await e.runtime.delNetworkList(list, other);
      assert.deepEqual(await reservedIps(e.dataDir, NET), []);
    });
  },
);

rootTest(
  "VERSION negotiation: 0.4.0 lists work and convert; a 1.1.0 list is refused before any plugin runs",
  async () => {
    await withEnv("ver", async (e) => {
      const info = await e.runtime.versionInfo("bridge");
      assert.ok(info.supportedVersions.includes("1.0.0"));
      assert.ok(info.supportedVersions.includes("0.4.0"));

      const l04 = e.list(
        bridgePlugins(e.br, e.dataDir, [[{ subnet: "10.233.7.0/24" }]]),
        "0.4.0",
      );
      const result = await e.runtime.addNetworkList(l04, e.rt);
      assert.equal(result.cniVersion, "1.0.0");
      assert.equal(Object.hasOwn(result.ips[0], "version"), false);
      assert.deepEqual(await addrsIn(e.nsName, "eth0"), resultAddrs(result));
      assert.equal(await e.runtime.checkNetworkList(l04, e.rt), "done"); // prevResult back in 0.4.0 form
      await e.runtime.delNetworkList(l04, e.rt);
      assert.deepEqual(await reservedIps(e.dataDir, NET), []);
      await deleteLink(e.br);

      const l11 = e.list(
        bridgePlugins(e.br, e.dataDir, [[{ subnet: "10.233.7.0/24" }]]),
        "1.1.0",
      );
      await assert.rejects(
        () => e.runtime.addNetworkList(l11, e.rt),
        (err: unknown) =>
          err instanceof CniVersionError && err.plugin === "bridge" &&
          err.wanted === "1.1.0",
      );
      assert.equal(await linkExists(e.br), false, "nothing ran");
      // STATUS and GC are 1.1.0: skipped cleanly for these plugins.
      assert.equal(await e.runtime.getStatus(l11), "skipped");
      assert.equal(await e.runtime.getStatus(l04), "skipped");
      assert.deepEqual(await e.runtime.gcNetworkList(l11, []), {
        plugins: "skipped",
        staleDeleted: [],
      });
    });
  },
);

rootTest(
  "DEL works from the cache after the conflist on disk changed",
  async () => {
    await withEnv("chg", async (e) => {
      const confDir = join(e.dir, "net.d");
      await Deno.mkdir(confDir);
      const file = join(confDir, "10-test.conflist");
      await Deno.writeTextFile(
        file,
        JSON.stringify({
          cniVersion: "1.0.0",
          name: NET,
          plugins: bridgePlugins(e.br, e.dataDir, [[{
            subnet: "10.233.8.0/24",
          }]]),
        }),
      );
      const list = (await loadConfDir(confDir)).findNetwork(NET)!;
      const result = await e.runtime.addNetworkList(list, e.rt);
      const ip = result.ips[0].address.split("/")[0];
      assert.deepEqual(await reservedIps(e.dataDir, NET), [ip]);

      // The operator rewrites the network: other subnet, a plugin that is gone.
      await Deno.writeTextFile(
        file,
        JSON.stringify({
          cniVersion: "1.0.0",
          name: NET,
          plugins: [{ type: "gone-plugin" }],
        }),
      );
      assert.equal(
        (await loadConfDir(confDir)).findNetwork(NET)!.plugins[0].type,
        "gone-plugin",
      );

      assert.equal(await e.runtime.delCachedAttachment(NET, e.rt), true);
      assert.deepEqual(await reservedIps(e.dataDir, NET), []);
      assert.equal(await linkExists("eth0", e.nsName), false);
      assert.equal(await e.runtime.delCachedAttachment(NET, e.rt), false);
    });
  },
);

rootTest(
  "a failing 2nd plugin rolls back the 1st: host-local's dataDir is empty again",
  async () => {
    await withTempDir(async (fakeBin) => {
      await writeFakePlugin(
        fakeBin,
        "failer",
        `[ "$CNI_COMMAND" = VERSION ] && { echo '${FAKE_VERSIONS}'; exit 0; }
[ "$CNI_COMMAND" = DEL ] && exit 0
echo '{"code":7,"msg":"refused by test","details":"on purpose"}'; exit 1`,
      );
      await withEnv("rb", async (e) => {
        const list = e.list([
          ...bridgePlugins(e.br, e.dataDir, [[{ subnet: "10.233.9.0/24" }]]),
          { type: "failer" },
        ]);
        await assert.rejects(
          () => e.runtime.addNetworkList(list, e.rt),
          (err: unknown) =>
            err instanceof CniPluginError && err.code === 7 &&
            err.msg === "refused by test" &&
            err.details === "on purpose" && err.rollbackError === undefined,
        );
        assert.deepEqual(await reservedIps(e.dataDir, NET), []);
        assert.equal(await linkExists("eth0", e.nsName), false);
        assert.equal(
          await e.cache.get({
            network: NET,
            containerId: e.rt.containerId,
            ifName: "eth0",
          }),
          null,
        );
      }, { binDirs: [fakeBin, REAL_BIN] });
    });
  },
);

// Optional kernel features: probed once in this (unshared) netns.
const probeIfb = linkName("pi");
const IFB_OK = await probe("ip", "link", "add", probeIfb, "type", "ifb");
if (IFB_OK) await deleteLink(probeIfb);
const IPTABLES_OK = await probe("iptables", "-w", "-t", "nat", "-L", "-n");

function optionalTest(
  name: string,
  ok: boolean,
  why: string,
  fn: () => Promise<void>,
): void {
  if (ok) rootTest(name, fn);
  else Deno.test({ name: `${name} (skipped: ${why})`, ignore: true, fn });
}

optionalTest(
  "bandwidth shapes the host veth (tbf) and the ifb for egress",
  IFB_OK,
  "ifb devices cannot be created here",
  async () => {
    await withEnv("bw", async (e) => {
      const list = e.list([
        ...bridgePlugins(e.br, e.dataDir, [[{ subnet: "10.233.10.0/24" }]]),
        { type: "bandwidth", capabilities: { bandwidth: true } },
      ]);
      const bandwidth = {
        ingressRate: 8_000_000,
        ingressBurst: 80_000,
        egressRate: 4_000_000,
        egressBurst: 40_000,
      };
      const result = await e.runtime.addNetworkList(list, {
        ...e.rt,
        capabilityArgs: { bandwidth },
      });
      const hostVeth = result.interfaces.find((i) =>
        !i.sandbox && i.name !== e.br
      );
      assert.ok(hostVeth);
      const qdiscs = await tcJson<{ kind: string }>(
        "qdisc",
        "show",
        "dev",
        hostVeth.name,
      );
      assert.ok(qdiscs.some((q) => q.kind === "tbf"), JSON.stringify(qdiscs));
      const ifbs = await ipJson<{ ifname: string }>(
        "link",
        "show",
        "type",
        "ifb",
      );
      assert.equal(ifbs.length, 1);
      await e.runtime.delNetworkList(list, {
        ...e.rt,
        capabilityArgs: { bandwidth },
      });
      assert.deepEqual(await ipJson("link", "show", "type", "ifb"), []);
      assert.deepEqual(await reservedIps(e.dataDir, NET), []);
    });
  },
);

optionalTest(
  "firewall adds and removes the container's FORWARD rules",
  IPTABLES_OK,
  "iptables does not work here",
  async () => {
    await withEnv("fw", async (e) => {
      const list = e.list([
        ...bridgePlugins(e.br, e.dataDir, [[{ subnet: "10.233.11.0/24" }]]),
        { type: "firewall", backend: "iptables" },
      ]);
      const result = await e.runtime.addNetworkList(list, e.rt);
      const ip = result.ips[0].address.split("/")[0];
      const rules = () =>
        sh("iptables", "-w", "-S", "CNI-FORWARD").catch(() => "");
      assert.ok((await rules()).includes(`${ip}/32`), await rules());
      assert.equal(await e.runtime.checkNetworkList(list, e.rt), "done");
      await e.runtime.delNetworkList(list, e.rt);
      assert.ok(!(await rules()).includes(`${ip}/32`));
      assert.deepEqual(await reservedIps(e.dataDir, NET), []);
    });
  },
);

optionalTest(
  "portmap DNATs the host port from the portMappings capability",
  IPTABLES_OK,
  "iptables does not work here",
  async () => {
    await withEnv("pm", async (e) => {
      const list = e.list([
        ...bridgePlugins(e.br, e.dataDir, [[{ subnet: "10.233.13.0/24" }]]),
        { type: "portmap", capabilities: { portMappings: true }, snat: true },
      ]);
      const capabilityArgs = {
        portMappings: [{ hostPort: 18080, containerPort: 80, protocol: "tcp" }],
      };
      const result = await e.runtime.addNetworkList(list, {
        ...e.rt,
        capabilityArgs,
      });
      const ip = result.ips[0].address.split("/")[0];
      const nat = () => sh("iptables", "-w", "-t", "nat", "-S");
      const rules = await nat();
      assert.match(rules, /--dport 18080/);
      assert.ok(rules.includes(`--to-destination ${ip}:80`), rules);
      await e.runtime.delNetworkList(list, { ...e.rt, capabilityArgs });
      const after = await nat();
      assert.ok(!after.includes(`--to-destination ${ip}:80`), after);
      assert.deepEqual(await reservedIps(e.dataDir, NET), []);
    });
  },
);
