/**
 * CNI capability args and the CNI 1.1 verbs, end to end (issue 11 §3):
 *
 * - Debian's portmap and bandwidth plugins in the chain get
 *   `portMappings` and `bandwidth` from `add --port`/`--cni-bandwidth`
 *   (their DNAT rules and their qdiscs appear), CHECK passes with the same
 *   args (`verify`), and DEL gets them again (the rules go);
 * - a chain that speaks 1.1 (a test plugin wrapping Debian's bridge, see
 *   _cni11.ts): `networks` and `doctor` show its STATUS, `add` refuses it
 *   while STATUS says not ready (nothing changed), `gc` sends it GC with
 *   the attachments still recorded, `dns` reaches the plugin that declares
 *   it and nothing it does not declare;
 * - `networks` gives subnets, gateways, MTU and the chain; `doctor` checks
 *   every plugin a conflist names and reports the policy features.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type Fixture, makeFixture } from "../provider/_fixture.ts";
import type { NicConfig, VerifyResult } from "../../src/provider/types.ts";
import type { NetworksReport } from "../../src/provider/networks.ts";
import { rootTest, run, sh } from "../support/harness.ts";
import { cni11Plugin } from "./_cni11.ts";

type Json = Record<string, unknown>;

rootTest(
  "cni: portmap and bandwidth get portMappings and bandwidth; CHECK passes with them; DEL takes their rules away",
  async () => {
    const fx = await makeFixture("pcap", {
      octet: 141,
      extraPlugins: [
        { type: "portmap", capabilities: { portMappings: true }, snat: false },
        { type: "bandwidth", capabilities: { bandwidth: true } },
      ],
    });
    try {
      const [nic] = await fx.cliOk<NicConfig[]>([
        "add",
        "vm",
        "--port",
        "18081:80",
        "--port",
        "18053:53/udp",
        "--cni-bandwidth",
        "20mbit:64kb",
      ]);
      assert.deepEqual(nic.capabilityArgs, {
        portMappings: [
          { hostPort: 18081, containerPort: 80, protocol: "tcp" },
          { hostPort: 18053, containerPort: 53, protocol: "udp" },
        ],
        bandwidth: {
          ingressRate: 20_000_000,
          ingressBurst: 65_536 * 8,
          egressRate: 20_000_000,
          egressBurst: 65_536 * 8,
        },
      });
      const ip = nic.ips[0].address;
      const nat = await sh("iptables-save", "-t", "nat");
      assert.match(
        nat,
        new RegExp(`--dport 18081 .*--to-destination ${ip}:80`),
      );
      assert.match(
        nat,
        new RegExp(`--dport 18053 .*--to-destination ${ip}:53`),
      );
      // The bandwidth plugin's own shaping, on the host side.
      const qdiscs = await sh("tc", "qdisc", "show");
      assert.match(qdiscs, /qdisc tbf .* rate 20Mbit/);
      const v = await fx.cliOk<VerifyResult>(["verify", "vm"]);
      assert.equal(v.ok, true, v.problems.join("\n"));
      assert.equal(v.nics[0].check, "ok", "CHECK with the same args");
      await fx.cliOk(["delete", "vm"]);
      const after = await sh("iptables-save", "-t", "nat");
      assert.doesNotMatch(after, new RegExp(`--to-destination ${ip}:`));
      assert.doesNotMatch(await sh("tc", "qdisc", "show"), /rate 20Mbit/);
    } finally {
      await fx.cleanup();
    }
  },
);

/** A second network whose chain speaks CNI 1.1 (bridge11). */
async function withNet11(
  fx: Fixture,
  fn: (
    n: { name: string; notReady: string; gcLog: string; addLog: string },
  ) => Promise<void>,
): Promise<void> {
  const name = `${fx.network}-11`;
  const bridge = `${fx.bridge.slice(0, 12)}v11`;
  const notReady = join(fx.dir, "not-ready");
  const gcLog = join(fx.dir, "gc.json");
  const addLog = join(fx.dir, "add.jsonl");
  await Deno.writeTextFile(join(fx.binDir, "bridge11"), cni11Plugin(), {
    mode: 0o755,
  });
  const subnet = fx.subnet.replace(
    /^10\.(\d+)\./,
    (_m, o) => `10.${Number(o) + 1}.`,
  );
  await Deno.writeTextFile(
    join(fx.cniConfDir, `20-${name}.conflist`),
    JSON.stringify({
      cniVersion: "1.1.0",
      name,
      plugins: [{
        type: "bridge11",
        bridge,
        isGateway: true,
        mtu: 1400,
        capabilities: { dns: true },
        notReadyFile: notReady,
        gcLog,
        addLog,
        ipam: {
          type: "host-local",
          ranges: [[{ subnet }]],
          dataDir: fx.ipamDir,
        },
      }],
    }),
  );
  try {
    await fn({ name, notReady, gcLog, addLog });
  } finally {
    await run("ip", ["link", "del", bridge]);
  }
}

rootTest(
  "cni 1.1: networks and doctor show STATUS; add refuses a chain that is not ready; gc sends GC with the valid attachments; dns reaches who declares it",
  async () => {
    const fx = await makeFixture("p11", { octet: 143 });
    try {
      await withNet11(fx, async (n) => {
        // networks: details, and STATUS where the chain speaks 1.1.
        let nets = await fx.cliOk<NetworksReport>(["networks"]);
        const by = (name: string) =>
          nets.networks.find((x) => x.name === name)!;
        assert.equal(by(n.name).status, "ok");
        assert.equal(by(fx.network).status, "skipped");
        assert.deepEqual(by(fx.network).subnets, [fx.subnet]);
        assert.equal(by(n.name).mtu, 1400);
        assert.deepEqual(by(n.name).chain, [{
          type: "bridge11",
          capabilities: ["dns"],
          ipam: "host-local",
        }]);
        const human = await fx.cli(["networks"], { json: false });
        assert.match(human.stdout, /STATUS ok/);
        assert.match(human.stdout, /chain bridge\(host-local\)/);

        // Not ready: add refuses, nothing made; networks and doctor say so.
        await Deno.writeTextFile(n.notReady, "");
        const refused = await fx.cli(["add", "vm0", "--network", n.name]);
        assert.equal(refused.code, 1, refused.stderr);
        assert.match(
          JSON.parse(refused.stderr).error.message,
          new RegExp(
            `network ${n.name} is not ready \\(CNI STATUS\\): .*bridge11 is not ready.*; nothing was changed`,
          ),
        );
        assert.deepEqual(await fx.netns(), []);
        assert.deepEqual(await fx.leasedIps(n.name), []);
        nets = await fx.cliOk<NetworksReport>(["networks"]);
        assert.equal(by(n.name).status, "not-ready");
        assert.match(by(n.name).statusError ?? "", /bridge11 is not ready/);
        const doc = await fx.cli(["doctor"]);
        const checks = JSON.parse(doc.stdout).checks as Json[];
        const status = checks.find((c) => c.name === "cni status");
        assert.equal(status?.ok, false, JSON.stringify(checks));
        await Deno.remove(n.notReady);

        // Ready: two VMs on it, dns given; gc collects one and sends GC.
        const [a] = await fx.cliOk<NicConfig[]>([
          "add",
          "a",
          "--network",
          n.name,
          "--dns-server",
          "10.53.0.1",
          "--dns-search",
          "example.test",
          "--port",
          "18082:80",
        ]);
        await fx.cliOk(["add", "b", "--network", n.name]);
        const logged = (await Deno.readTextFile(n.addLog)).trim().split("\n")
          .map((l) => JSON.parse(l));
        assert.deepEqual(logged[0], {
          dns: { servers: ["10.53.0.1"], searches: ["example.test"] },
        }, "dns only: the plugin declares no portMappings");
        assert.deepEqual(logged[1], {}, "b asked for nothing");
        const gc = await fx.cliOk<Json>(["gc", "--active", "a"]);
        assert.deepEqual(gc.collected, ["b"]);
        assert.deepEqual(gc.warnings, []);
        const sent = JSON.parse(await Deno.readTextFile(n.gcLog));
        assert.deepEqual(sent["cni.dev/valid-attachments"], [{
          containerID: `vmnic-${await installId(fx)}-a`,
          ifname: "eth0",
        }]);
        assert.equal(sent.name, n.name);
        assert.equal((await fx.cliOk<VerifyResult>(["verify", "a"])).ok, true);
        assert.equal(a.network, n.name);
      });
    } finally {
      await fx.cleanup();
    }
  },
);

/** The install id of the fixture (in its container ids). */
async function installId(fx: Fixture): Promise<string> {
  const p = await fx.provider();
  try {
    return p.installId;
  } finally {
    p.close();
  }
}

rootTest(
  "doctor: every plugin a conflist names is checked; the policy features of this kernel are reported",
  async () => {
    const fx = await makeFixture("pdoc", {
      octet: 144,
      extraPlugins: [{ type: "vmnict-no-such-plugin" }],
    });
    try {
      const r = await fx.cli(["doctor"]);
      const checks = JSON.parse(r.stdout).checks as Json[];
      const plugins = checks.find((c) => c.name === "cni plugins")!;
      assert.equal(plugins.ok, false);
      assert.match(String(plugins.detail), /vmnict-no-such-plugin/);
      const features = checks.find((c) => c.name === "policy features")!;
      assert.equal(features.ok, true, String(features.detail));
      assert.match(
        String(features.detail),
        /ingress yes, u32 yes, mirred yes.*tbf (yes|no).*police (yes|no)/,
      );
      const file = checks.find((c) => c.name === "policy file")!;
      assert.equal(file.ok, true);
    } finally {
      await fx.cleanup();
    }
  },
);
