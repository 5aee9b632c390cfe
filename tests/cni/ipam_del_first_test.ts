/**
 * `CniRuntimeOptions.ipamDelFirst` and `CniRuntime.delIpam`: an IPAM that
 * must let go while the interface exists (CNI's `dhcp`) gets its own DEL
 * before the chain's DEL and before a failed ADD's rollback, with its main
 * plugin's config; other IPAM types and runtimes without the option are
 * run as libcni runs them. Plugins are an in-process fake `PluginExec` that
 * records each call.
 */
import assert from "node:assert/strict";
import {
  CniPluginError,
  CniRuntime,
  ipamTypeOf,
  parseConfList,
  type PluginExec,
} from "../../src/cni/mod.ts";

const NETNS = "/var/run/netns/vmnic-fake-none";
const rt = { containerId: "vm-fake-1", netns: NETNS, ifName: "eth0" };
const RESULT = {
  cniVersion: "1.0.0",
  interfaces: [{ name: "eth0", sandbox: NETNS }],
  ips: [{ address: "10.213.0.100/24", interface: 0 }],
  routes: [],
  dns: {},
};

interface Call {
  type: string;
  command: string;
  stdin: Record<string, unknown>;
  env: Record<string, string>;
}

/** A fake exec: records calls; `failAdd` makes that type's ADD fail. */
function fakeExec(calls: Call[], failAdd?: string): PluginExec {
  return {
    find: (type) => Promise.resolve(`/fake/${type}`),
    identity: () => Promise.resolve(null),
    exec(req) {
      if (req.command === "VERSION") {
        return Promise.resolve({
          cniVersion: "1.0.0",
          supportedVersions: ["0.4.0", "1.0.0"],
        });
      }
      calls.push({
        type: req.pluginType,
        command: req.command,
        stdin: JSON.parse(req.stdin),
        env: req.env,
      });
      if (req.command === "ADD") {
        if (req.pluginType === failAdd) {
          return Promise.reject(
            new CniPluginError({
              plugin: req.pluginType,
              command: req.command,
              code: 11,
              msg: "fails",
              exitCode: 1,
              stderr: "",
            }),
          );
        }
        return Promise.resolve(RESULT);
      }
      return Promise.resolve(null);
    },
  };
}

function list(ipam: string, extra: object[] = []) {
  return parseConfList(
    JSON.stringify({
      cniVersion: "1.0.0",
      name: "overlay",
      plugins: [
        {
          type: "bridge",
          bridge: "vmbr0",
          ipam: { type: ipam, daemonSocketPath: "/run/x/dhcp.sock" },
        },
        ...extra,
      ],
    }),
    "test",
  );
}

const order = (calls: Call[]) => calls.map((c) => `${c.type} ${c.command}`);

Deno.test("ipamTypeOf: a plugin's ipam.type, or null", () => {
  const l = list("dhcp", [{ type: "tuning" }]);
  assert.equal(ipamTypeOf(l.plugins[0]), "dhcp");
  assert.equal(ipamTypeOf(l.plugins[1]), null);
});

Deno.test("ipamDelFirst: DEL runs the dhcp plugin before the chain, with the bridge's config and prevResult", async () => {
  const calls: Call[] = [];
  const cni = new CniRuntime({
    exec: fakeExec(calls),
    ipamDelFirst: ["dhcp"],
  });
  await cni.delNetworkList(
    list("dhcp", [{ type: "tuning" }]),
    rt,
    RESULT as never,
  );
  assert.deepEqual(order(calls), ["dhcp DEL", "tuning DEL", "bridge DEL"]);
  const [dhcp] = calls;
  assert.equal(dhcp.stdin.type, "bridge", "its main plugin's config");
  assert.equal(dhcp.stdin.name, "overlay");
  assert.deepEqual(dhcp.stdin.ipam, {
    type: "dhcp",
    daemonSocketPath: "/run/x/dhcp.sock",
  });
  assert.ok(dhcp.stdin.prevResult, "with prevResult");
  assert.equal(dhcp.env.CNI_COMMAND, "DEL");
  assert.equal(dhcp.env.CNI_CONTAINERID, rt.containerId);
  assert.equal(dhcp.env.CNI_NETNS, NETNS);
  assert.equal(dhcp.env.CNI_IFNAME, "eth0");
});

Deno.test("ipamDelFirst: other IPAM types, and runtimes without the option, DEL as libcni does", async () => {
  const calls: Call[] = [];
  await new CniRuntime({ exec: fakeExec(calls), ipamDelFirst: ["dhcp"] })
    .delNetworkList(list("host-local"), rt, null);
  assert.deepEqual(order(calls), ["bridge DEL"]);
  calls.length = 0;
  await new CniRuntime({ exec: fakeExec(calls) }).delNetworkList(
    list("dhcp"),
    rt,
    null,
  );
  assert.deepEqual(order(calls), ["bridge DEL"]);
});

Deno.test("ipamDelFirst: a failed ADD's rollback releases the dhcp lease first; a failing release stops a DEL", async () => {
  const calls: Call[] = [];
  const cni = new CniRuntime({
    exec: fakeExec(calls, "tuning"),
    ipamDelFirst: ["dhcp"],
  });
  await assert.rejects(
    cni.addNetworkList(list("dhcp", [{ type: "tuning" }]), rt),
    CniPluginError,
  );
  assert.deepEqual(order(calls), [
    "bridge ADD",
    "tuning ADD",
    "dhcp DEL",
    "tuning DEL",
    "bridge DEL",
  ]);

  // The daemon unreachable: the release fails, and the chain's DEL (which
  // would delete the veth the release needs) is not run.
  const failing: PluginExec = {
    ...fakeExec(calls),
    exec(req) {
      if (req.pluginType === "dhcp") {
        return Promise.reject(
          new CniPluginError({
            plugin: "dhcp",
            command: "DEL",
            code: 999,
            msg: "error dialing DHCP daemon",
            exitCode: 1,
            stderr: "",
          }),
        );
      }
      return fakeExec(calls).exec(req);
    },
  };
  calls.length = 0;
  await assert.rejects(
    new CniRuntime({ exec: failing, ipamDelFirst: ["dhcp"] }).delNetworkList(
      list("dhcp"),
      rt,
      null,
    ),
    /error dialing DHCP daemon/,
  );
  assert.deepEqual(order(calls), []);
});

Deno.test("delIpam: runs the named IPAM types' DEL alone", async () => {
  const calls: Call[] = [];
  const cni = new CniRuntime({ exec: fakeExec(calls) });
  assert.deepEqual(
    await cni.delIpam(list("dhcp"), rt, new Set(["dhcp"])),
    ["dhcp"],
  );
  assert.deepEqual(
    await cni.delIpam(list("host-local"), rt, new Set(["dhcp"])),
    [],
  );
  assert.deepEqual(order(calls), ["dhcp DEL"]);
});
