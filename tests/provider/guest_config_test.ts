/**
 * Guest configs a real guest accepts (issue #12): the default-route rule
 * on constructed NICs, then every scenario through Debian's netplan.io
 * (`netplan generate --root-dir`), whose networkd files must say what
 * vmnic's own networkd output says. The cloud-init `network-config` goes
 * through netplan too (cloud-init hands v2 to netplan under `network:`),
 * through a YAML 1.1 parser (python3-yaml) and, when cloud-init is
 * installed, through cloud-init's own renderers. As root, a real
 * systemd-networkd applies vmnic's networkd units to veths in throwaway
 * network and mount namespaces. Each tool that is missing skips its tests,
 * with the reason in the test name; nothing is installed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  cloudInitNetworkConfig,
  GUEST_CONFIG_FORMATS,
  type GuestConfigFile,
  kernelCmdline,
  netplan,
  networkd,
  renderGuestConfig,
} from "../../src/provider/guest_config.ts";
import {
  InvalidInputError,
  OperationError,
} from "../../src/provider/errors.ts";
import type { NicConfig } from "../../src/provider/types.ts";

// ---------------------------------------------------------------------------
// NICs and scenarios

/** A live NIC; `over` replaces any field. */
function nic(index: number, over: Partial<NicConfig> = {}): NicConfig {
  return {
    id: `nic${index}`,
    vmId: "vm1",
    index,
    ifName: `eth${index}`,
    tap: `tap${index}`,
    mac: `02:00:00:00:00:0${index + 1}`,
    network: "net",
    netnsPath: "/var/run/netns/vmnic-vm1",
    numQueues: 1,
    queueSize: 256,
    mtu: 1500,
    ips: [{
      address: `10.8${index}.0.5`,
      prefix: 24,
      gateway: `10.8${index}.0.1`,
      version: 4,
    }],
    routes: [{ dst: "0.0.0.0/0" }],
    dns: {},
    state: "active",
    createdAt: "2024-01-01T00:00:00.000Z",
    ...over,
  };
}

const DUAL = nic(0, {
  mac: "52:54:00:12:34:56", // all digits: a sexagesimal integer to YAML 1.1
  ips: [
    { address: "10.80.0.5", prefix: 24, gateway: "10.80.0.1", version: 4 },
    { address: "fd00:80::5", prefix: 64, gateway: "fd00:80::1", version: 6 },
  ],
  routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0" }, {
    dst: "2001:db8::/32",
    gw: "fd00:80::fe",
  }],
  dns: {
    nameservers: ["10.80.0.53", "fd00:80::53"],
    search: ["example.com", "yes", "1e3"],
  },
});

/** Every scenario the netplan and cloud-init checks run. */
const SCENARIOS: Record<string, NicConfig[]> = {
  "one NIC, IPv4": [nic(0)],
  "two NICs, both with gateways": [nic(0), nic(1)],
  "dual stack": [DUAL],
  "NIC 0 without a gateway, NIC 1 with one": [
    nic(0, {
      ips: [{ address: "10.80.0.5", prefix: 24, version: 4 }],
    }),
    nic(1),
  ],
  "MTU 9000, DNS and search domains": [
    nic(0, {
      mtu: 9000,
      dns: {
        nameservers: ["10.80.0.53", "10.80.0.54"],
        search: ["svc.example", "example"],
      },
    }),
  ],
  "dual stack on two NICs, IPv6 only on NIC 1": [
    nic(0),
    nic(1, {
      ips: [
        { address: "10.81.0.5", prefix: 24, gateway: "10.81.0.1", version: 4 },
        {
          address: "fd00:81::5",
          prefix: 64,
          gateway: "fd00:81::1",
          version: 6,
        },
      ],
      routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0" }, { dst: "10.99.0.0/16" }],
      dns: { domain: "corp.example" },
    }),
  ],
  "on-link route (no gateway at all)": [
    nic(0, {
      ips: [{ address: "10.80.0.5", prefix: 24, version: 4 }],
      routes: [{ dst: "10.70.0.0/16" }],
    }),
  ],
  "MAC and MTU unknown": [
    nic(0, { mac: undefined, mtu: undefined }),
  ],
};

// ---------------------------------------------------------------------------
// Reading the outputs

/** `[Section]` blocks of an INI file, in order, each with its `Key=value`s. */
function parseIni(text: string): { name: string; kv: [string, string][] }[] {
  const out: { name: string; kv: [string, string][] }[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const sec = /^\[(.+)\]$/.exec(line);
    if (sec) {
      out.push({ name: sec[1], kv: [] });
      continue;
    }
    const eq = line.indexOf("=");
    assert.ok(eq > 0 && out.length, `not an INI line: ${JSON.stringify(raw)}`);
    out.at(-1)!.kv.push([line.slice(0, eq), line.slice(eq + 1)]);
  }
  return out;
}

/** What a guest's networkd does with one interface. */
interface Semantics {
  /** The name a `.link` file gives it. */
  linkName?: string;
  /** MTU from the `.link` file. */
  linkMtu?: string;
  /** MTU from the `.network` unit's `[Link]`. */
  mtu?: string;
  addresses: string[];
  /** `destination via gateway scope`, sorted. */
  routes: string[];
  dns: string[];
  domains: string[];
  dhcp: string;
  acceptRa?: string;
  linkLocal?: string;
}

/**
 * The networkd files of a directory (or a list), per interface, keyed by
 * the MAC they match (`MACAddress=` or netplan's `PermanentMACAddress=`),
 * or `name=<Name>` when they match by name.
 */
function semantics(files: GuestConfigFile[]): Map<string, Semantics> {
  const out = new Map<string, Semantics>();
  const entry = (key: string) => {
    let s = out.get(key);
    if (!s) {
      s = { addresses: [], routes: [], dns: [], domains: [], dhcp: "no" };
      out.set(key, s);
    }
    return s;
  };
  for (const f of files) {
    const ini = parseIni(f.content);
    const match = ini.filter((s) => s.name === "Match").flatMap((s) => s.kv);
    const mac = match.find(([k]) =>
      k === "MACAddress" || k === "PermanentMACAddress"
    )?.[1];
    const name = match.find(([k]) => k === "Name")?.[1];
    const key = mac ? mac.toLowerCase() : `name=${name}`;
    const s = entry(key);
    const family = (a: string) => a.includes(":") ? "::/0" : "0.0.0.0/0";
    if (f.name.endsWith(".link")) {
      for (const sec of ini.filter((x) => x.name === "Link")) {
        for (const [k, v] of sec.kv) {
          if (k === "Name") s.linkName = v;
          if (k === "MTUBytes") s.linkMtu = v;
        }
      }
      continue;
    }
    if (!f.name.endsWith(".network")) continue;
    for (const sec of ini) {
      const get = (k: string) =>
        sec.kv.filter(([x]) => x === k).map((e) => e[1]);
      if (sec.name === "Link") s.mtu = get("MTUBytes").at(-1);
      if (sec.name === "Address") s.addresses.push(...get("Address"));
      if (sec.name === "Network") {
        s.addresses.push(...get("Address"));
        s.dns.push(...get("DNS").flatMap((v) => v.split(/\s+/)));
        s.domains.push(...get("Domains").flatMap((v) => v.split(/\s+/)));
        for (const gw of get("Gateway")) {
          s.routes.push(`${family(gw)} via ${gw}`);
        }
        s.dhcp = get("DHCP").at(-1) ?? s.dhcp;
        s.acceptRa = get("IPv6AcceptRA").at(-1) ?? s.acceptRa;
        s.linkLocal = get("LinkLocalAddressing").at(-1) ?? s.linkLocal;
      }
      if (sec.name === "Route") {
        const gw = get("Gateway")[0];
        assert.ok(
          !get("Destination").includes("default"),
          `${f.name}: Destination=default (networkd rejects it)`,
        );
        const dst = get("Destination")[0] ?? family(gw ?? "");
        const scope = get("Scope")[0];
        s.routes.push(
          [dst, gw ? `via ${gw}` : "", scope ? `scope ${scope}` : ""]
            .filter(Boolean).join(" "),
        );
      }
    }
  }
  for (const s of out.values()) {
    for (const k of ["addresses", "routes", "dns", "domains"] as const) {
      s[k].sort();
    }
  }
  return out;
}

/** The `.network` and `.link` files under `dir`. */
async function networkdFiles(dir: string): Promise<GuestConfigFile[]> {
  const out: GuestConfigFile[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!/\.(network|link)$/.test(e.name)) continue;
      out.push({
        name: e.name,
        content: await Deno.readTextFile(join(dir, e.name)),
      });
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** The lines of one NIC's entry in a netplan or cloud-init document. */
function yamlEntry(doc: string, ifName: string): string {
  const lines = doc.split("\n");
  const start = lines.findIndex((l) => l.trim() === `"${ifName}":`);
  assert.ok(start >= 0, `no entry for ${ifName}`);
  const indent = lines[start].search(/\S/);
  let end = start + 1;
  while (end < lines.length && lines[end].search(/\S/) > indent) end++;
  return lines.slice(start, end).join("\n");
}

function fileOf(files: GuestConfigFile[], name: string): string {
  const f = files.find((x) => x.name === name);
  assert.ok(f, `no ${name} among ${files.map((x) => x.name).join(", ")}`);
  return f.content;
}

// ---------------------------------------------------------------------------
// Unit tests: the default-route rule and the fields, every format

Deno.test("one NIC, IPv4: a default route in every format, via its gateway", () => {
  const nics = [nic(0)];
  const nd = fileOf(networkd(nics), "10-vmnic-eth0.network");
  assert.match(
    nd,
    /\[Route\]\nDestination=0\.0\.0\.0\/0\nGateway=10\.80\.0\.1\n/,
  );
  assert.match(nd, /\[Match\]\nMACAddress=02:00:00:00:00:01\n/);
  assert.match(nd, /\[Link\]\nMTUBytes=1500\n/);
  assert.match(nd, /^Address=10\.80\.0\.5\/24$/m);
  assert.match(nd, /^LinkLocalAddressing=no$/m);
  assert.match(
    fileOf(networkd(nics), "10-vmnic-eth0.link"),
    /\[Link\]\nName=eth0\nMTUBytes=1500\n/,
  );
  const np = netplan(nics);
  assert.match(np, /^network:\n {2}version: 2\n {2}ethernets:\n/);
  assert.match(np, /- to: default\n {10}via: "10\.80\.0\.1"/);
  assert.match(np, /macaddress: "02:00:00:00:00:01"/);
  assert.match(np, /set-name: "eth0"/);
  assert.match(np, /mtu: 1500/);
  assert.match(np, /addresses:\n {8}- "10\.80\.0\.5\/24"/);
  const ci = cloudInitNetworkConfig(nics);
  assert.match(ci, /^version: 2\nethernets:\n/);
  assert.doesNotMatch(ci, /^network:/m);
  assert.match(ci, /- to: "0\.0\.0\.0\/0"\n {8}via: "10\.80\.0\.1"/);
  assert.equal(
    kernelCmdline("vm1", nics),
    "ip=10.80.0.5::10.80.0.1:255.255.255.0:vm1:eth0:off",
  );
});

Deno.test("two NICs with gateways: only NIC 0 gets the default route", () => {
  const nics = [nic(1), nic(0)]; // out of order on purpose
  const files = networkd(nics);
  assert.deepEqual(files.map((f) => f.name), [
    "10-vmnic-eth0.network",
    "10-vmnic-eth0.link",
    "10-vmnic-eth1.network",
    "10-vmnic-eth1.link",
  ]);
  assert.match(
    fileOf(files, "10-vmnic-eth0.network"),
    /Destination=0\.0\.0\.0\/0/,
  );
  const eth1 = fileOf(files, "10-vmnic-eth1.network");
  assert.doesNotMatch(eth1, /\[Route\]/);
  assert.doesNotMatch(eth1, /Metric|Gateway/);
  assert.match(eth1, /^Address=10\.81\.0\.5\/24$/m);

  const np = netplan(nics);
  assert.equal(np.match(/to: default/g)?.length, 1);
  assert.match(yamlEntry(np, "eth0"), /to: default/);
  assert.doesNotMatch(yamlEntry(np, "eth1"), /routes:/);
  assert.doesNotMatch(np, /metric/);
  const ci = cloudInitNetworkConfig(nics);
  assert.equal(ci.match(/to: "0\.0\.0\.0\/0"/g)?.length, 1);
  assert.match(yamlEntry(ci, "eth0"), /0\.0\.0\.0\/0/);
});

Deno.test("dual stack: IPv4 and IPv6 default routes on NIC 0, IPv6 address, gateway and DNS", () => {
  const files = networkd([DUAL]);
  const nd = fileOf(files, "10-vmnic-eth0.network");
  assert.match(nd, /^Address=10\.80\.0\.5\/24$/m);
  assert.match(nd, /^Address=fd00:80::5\/64$/m);
  assert.match(
    nd,
    /\[Route\]\nDestination=0\.0\.0\.0\/0\nGateway=10\.80\.0\.1\n/,
  );
  assert.match(nd, /\[Route\]\nDestination=::\/0\nGateway=fd00:80::1\n/);
  assert.match(
    nd,
    /\[Route\]\nDestination=2001:db8::\/32\nGateway=fd00:80::fe\n/,
  );
  assert.match(nd, /^DNS=10\.80\.0\.53$/m);
  assert.match(nd, /^DNS=fd00:80::53$/m);
  assert.match(nd, /^Domains=example\.com yes 1e3$/m);
  assert.match(nd, /^LinkLocalAddressing=ipv6$/m);
  assert.match(nd, /^MACAddress=52:54:00:12:34:56$/m);

  const np = netplan([DUAL]);
  assert.match(np, /- to: default\n {10}via: "10\.80\.0\.1"/);
  assert.match(np, /- to: default\n {10}via: "fd00:80::1"/);
  assert.match(np, /- "fd00:80::5\/64"/);
  assert.match(np, /addresses: \["10\.80\.0\.53", "fd00:80::53"\]/);
  assert.match(np, /search: \["example\.com", "yes", "1e3"\]/);
  assert.match(np, /macaddress: "52:54:00:12:34:56"/);
  assert.match(np, /link-local: \["ipv6"\]/);

  // cloud-init: IPv6 default as gateway6 (cloud-init < 23.1 turns ::/0 into ::/64).
  const ci = cloudInitNetworkConfig([DUAL]);
  assert.match(ci, /gateway6: "fd00:80::1"/);
  assert.doesNotMatch(ci, /::\/0|to: default/);
  assert.match(ci, /- to: "0\.0\.0\.0\/0"\n {8}via: "10\.80\.0\.1"/);
  assert.match(ci, /- to: "2001:db8::\/32"\n {8}via: "fd00:80::fe"/);
  assert.doesNotMatch(ci, /link-local/);

  // The kernel ip= stays IPv4: no IPv6 DNS server, no IPv6 gateway.
  assert.equal(
    kernelCmdline("vm1", [DUAL]),
    "ip=10.80.0.5::10.80.0.1:255.255.255.0:vm1:eth0:off:10.80.0.53",
  );
});

Deno.test("NIC 0 without a gateway: NIC 1 gets the default route", () => {
  const nics = SCENARIOS["NIC 0 without a gateway, NIC 1 with one"];
  const files = networkd(nics);
  assert.doesNotMatch(fileOf(files, "10-vmnic-eth0.network"), /\[Route\]/);
  assert.match(
    fileOf(files, "10-vmnic-eth1.network"),
    /\[Route\]\nDestination=0\.0\.0\.0\/0\nGateway=10\.81\.0\.1\n/,
  );
  const np = netplan(nics);
  assert.doesNotMatch(yamlEntry(np, "eth0"), /routes:/);
  assert.match(yamlEntry(np, "eth1"), /to: default\n\s+via: "10\.81\.0\.1"/);
  // NIC 0 does not carry the default route: the ip= gateway field is empty.
  assert.equal(
    kernelCmdline("vm1", nics),
    "ip=10.80.0.5:::255.255.255.0:vm1:eth0:off",
  );
});

Deno.test("IPv6 default on NIC 1 while NIC 0 keeps the IPv4 one", () => {
  const nics = SCENARIOS["dual stack on two NICs, IPv6 only on NIC 1"];
  const files = networkd(nics);
  const eth0 = fileOf(files, "10-vmnic-eth0.network");
  const eth1 = fileOf(files, "10-vmnic-eth1.network");
  assert.match(eth0, /Destination=0\.0\.0\.0\/0/);
  assert.doesNotMatch(eth0, /Destination=::\/0/);
  assert.doesNotMatch(eth1, /Destination=0\.0\.0\.0\/0/);
  assert.match(eth1, /\[Route\]\nDestination=::\/0\nGateway=fd00:81::1\n/);
  // A non-default route keeps its own NIC's gateway.
  assert.match(
    eth1,
    /\[Route\]\nDestination=10\.99\.0\.0\/16\nGateway=10\.81\.0\.1\n/,
  );
  // `domain` stands in for a missing search list.
  assert.match(eth1, /^Domains=corp\.example$/m);
  const ci = cloudInitNetworkConfig(nics);
  assert.match(yamlEntry(ci, "eth1"), /gateway6: "fd00:81::1"/);
  assert.doesNotMatch(yamlEntry(ci, "eth0"), /gateway6/);
});

Deno.test("MTU 9000 in every format but cmdline", () => {
  const nics = SCENARIOS["MTU 9000, DNS and search domains"];
  const files = networkd(nics);
  assert.match(
    fileOf(files, "10-vmnic-eth0.network"),
    /\[Link\]\nMTUBytes=9000\n/,
  );
  assert.match(fileOf(files, "10-vmnic-eth0.link"), /^MTUBytes=9000$/m);
  assert.match(netplan(nics), /^ {6}mtu: 9000$/m);
  assert.match(cloudInitNetworkConfig(nics), /^ {4}mtu: 9000$/m);
});

Deno.test("DNS servers and search domains; values that would break a file are left out", () => {
  const nics = [
    nic(0, {
      dns: {
        nameservers: ["10.80.0.53", "10.80.0.54", "bad server", "x\ny"],
        search: ["svc.example", "example", 'q"uote', ""],
        domain: "ignored.example",
      },
    }),
  ];
  const nd = fileOf(networkd(nics), "10-vmnic-eth0.network");
  assert.deepEqual(
    nd.split("\n").filter((l) => /^(DNS|Domains)=/.test(l)),
    ["DNS=10.80.0.53", "DNS=10.80.0.54", "Domains=svc.example example"],
  );
  const np = netplan(nics);
  assert.match(
    np,
    / {6}nameservers:\n {8}addresses: \["10\.80\.0\.53", "10\.80\.0\.54"\]\n {8}search: \["svc\.example", "example"\]\n/,
  );
  for (const text of [np, nd, cloudInitNetworkConfig(nics)]) {
    assert.doesNotMatch(text, /bad server|x\ny|uote|ignored/);
  }
  assert.equal(
    kernelCmdline("vm1", nics),
    "ip=10.80.0.5::10.80.0.1:255.255.255.0:vm1:eth0:off:10.80.0.53:10.80.0.54",
  );
});

Deno.test("a gateway without a default route in the CNI result adds none", () => {
  const nics = [nic(0, { routes: [{ dst: "10.60.0.0/16" }] })];
  const nd = fileOf(networkd(nics), "10-vmnic-eth0.network");
  assert.doesNotMatch(nd, /Destination=0\.0\.0\.0\/0/);
  assert.match(
    nd,
    /\[Route\]\nDestination=10\.60\.0\.0\/16\nGateway=10\.80\.0\.1\n/,
  );
  assert.doesNotMatch(netplan(nics), /to: default/);
  assert.equal(
    kernelCmdline("vm1", nics),
    "ip=10.80.0.5:::255.255.255.0:vm1:eth0:off",
  );
});

Deno.test("a default route with its own gw wins over the NIC's gateway", () => {
  const nics = [nic(0, { routes: [{ dst: "0.0.0.0/0", gw: "10.80.0.254" }] })];
  assert.match(
    fileOf(networkd(nics), "10-vmnic-eth0.network"),
    /Destination=0\.0\.0\.0\/0\nGateway=10\.80\.0\.254\n/,
  );
});

Deno.test("on-link routes: Scope=link in networkd, left out of cloud-init", () => {
  const nics = SCENARIOS["on-link route (no gateway at all)"];
  const nd = fileOf(networkd(nics), "10-vmnic-eth0.network");
  assert.match(nd, /\[Route\]\nDestination=10\.70\.0\.0\/16\nScope=link\n/);
  assert.match(netplan(nics), /- to: "10\.70\.0\.0\/16"\n(?! +via)/);
  assert.doesNotMatch(cloudInitNetworkConfig(nics), /routes:/);
});

Deno.test("MAC and MTU unknown: match by name, no rename, no MTU, no crash", () => {
  const nics = SCENARIOS["MAC and MTU unknown"];
  const files = networkd(nics);
  assert.deepEqual(files.map((f) => f.name), ["10-vmnic-eth0.network"]);
  assert.match(files[0].content, /^\[Match\]\nName=eth0\n\n\[Network\]/);
  assert.doesNotMatch(files[0].content, /MTUBytes|MACAddress/);
  for (const doc of [netplan(nics), cloudInitNetworkConfig(nics)]) {
    assert.doesNotMatch(doc, /match:|set-name|mtu/);
    assert.match(doc, /"eth0":/);
  }
});

Deno.test("no Destination=default and no unquoted MAC, in any scenario", () => {
  for (const [name, nics] of Object.entries(SCENARIOS)) {
    for (const f of networkd(nics)) {
      assert.doesNotMatch(f.content, /=default\b/, `${name}: ${f.name}`);
    }
    for (const doc of [netplan(nics), cloudInitNetworkConfig(nics)]) {
      assert.doesNotMatch(doc, /macaddress: [^"]/, name);
      assert.doesNotMatch(doc, /search: \[[^"\]]/, name);
    }
  }
});

Deno.test("renderGuestConfig: cloud-init is a format, named network-config", () => {
  assert.ok((GUEST_CONFIG_FORMATS as readonly string[]).includes("cloud-init"));
  const nics = [nic(0)];
  assert.deepEqual(renderGuestConfig("vm1", nics, "cloud-init"), [
    { name: "network-config", content: cloudInitNetworkConfig(nics) },
  ]);
  assert.deepEqual(renderGuestConfig("vm1", nics, "netplan"), [
    { name: "50-vmnic.yaml", content: netplan(nics) },
  ]);
  assert.deepEqual(renderGuestConfig("vm1", nics, "networkd"), networkd(nics));
  assert.deepEqual(renderGuestConfig("vm1", nics, "cmdline"), [
    { name: "", content: kernelCmdline("vm1", nics) + "\n" },
  ]);
  assert.throws(
    () => renderGuestConfig("vm1", nics, "ifupdown" as "netplan"),
    InvalidInputError,
  );
  const v6only = [nic(0, {
    ips: [{ address: "fd00::5", prefix: 64, gateway: "fd00::1", version: 6 }],
    routes: [{ dst: "::/0" }],
  })];
  assert.throws(
    () => renderGuestConfig("vm1", v6only, "cmdline"),
    OperationError,
  );
});

// ---------------------------------------------------------------------------
// The real tools

/**
 * Runs a command with `stdin`, never throwing on a non-zero exit (the
 * harness's `run` needs --allow-sys; these tests do without).
 */
async function run(
  cmd: string,
  args: string[],
  opts: { stdin?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

/** The path of `cmd` on PATH (or in the sbin dirs), or null. */
function which(cmd: string): string | null {
  const dirs = (Deno.env.get("PATH") ?? "").split(":").filter(Boolean);
  for (const d of [...dirs, "/usr/sbin", "/sbin", "/usr/bin"]) {
    try {
      const p = join(d, cmd);
      if (Deno.statSync(p).isFile) return p;
    } catch { /* not here */ }
  }
  return null;
}

const NETPLAN = which("netplan");
const NETPLAN_MISSING = NETPLAN
  ? null
  : "netplan not installed (Debian package netplan.io)";

/** A python3 that can `import yaml`, or null. */
async function findPythonYaml(): Promise<string | null> {
  for (const py of ["/usr/bin/python3", which("python3")]) {
    if (!py) continue;
    try {
      const r = await run(py, ["-c", "import yaml"]);
      if (r.code === 0) return py;
    } catch { /* not runnable */ }
  }
  return null;
}
const PYYAML = await findPythonYaml();
const CLOUD_INIT = which("cloud-init");

/** A test that needs `missing` to be null; otherwise ignored, saying why. */
function toolTest(
  name: string,
  missing: string | null,
  fn: () => Promise<void>,
): void {
  Deno.test({
    name: missing ? `${name} (skipped: ${missing})` : name,
    ignore: missing !== null,
    fn,
  });
}

/** A temp dir for `fn`, removed afterwards. */
async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vmnic-guest-config-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Runs `netplan generate` on `yaml` as `<root>/etc/netplan/<file>` (mode
 * 0600, as netplan wants) and returns its stderr and the networkd files it
 * wrote.
 */
async function netplanGenerate(
  root: string,
  yaml: string,
  file = "50-vmnic.yaml",
): Promise<{ code: number; stderr: string; files: GuestConfigFile[] }> {
  await Deno.mkdir(join(root, "etc/netplan"), { recursive: true });
  const path = join(root, "etc/netplan", file);
  await Deno.writeTextFile(path, yaml, { mode: 0o600 });
  await Deno.chmod(path, 0o600);
  const r = await run(NETPLAN!, ["generate", "--root-dir", root]);
  return {
    code: r.code,
    stderr: r.stderr,
    files: await networkdFiles(join(root, "run/systemd/network")),
  };
}

toolTest(
  "netplan generate: a conflicting default route is reported (the check works)",
  NETPLAN_MISSING,
  () =>
    withTemp(async (root) => {
      // What vmnic wrote before issue #12: a default route on every NIC.
      const yaml = [
        "network:",
        "  version: 2",
        "  ethernets:",
        ...[0, 1].flatMap((i) => [
          `    eth${i}:`,
          `      addresses: ["10.8${i}.0.5/24"]`,
          "      routes:",
          "        - to: default",
          `          via: "10.8${i}.0.1"`,
        ]),
      ].join("\n") + "\n";
      const r = await netplanGenerate(root, yaml);
      assert.match(r.stderr, /Conflicting default route/);
    }),
);

for (const [scenario, nics] of Object.entries(SCENARIOS)) {
  toolTest(
    `netplan generate accepts the netplan output, same networkd as vmnic's: ${scenario}`,
    NETPLAN_MISSING,
    () =>
      withTemp(async (root) => {
        const r = await netplanGenerate(root, netplan(nics));
        assert.equal(r.code, 0, r.stderr);
        assert.doesNotMatch(r.stderr, /Conflicting default route/);
        assert.equal(r.stderr.trim(), "", "netplan warned");
        const generated = r.files.filter((f) => f.name.endsWith(".network"));
        assert.equal(generated.length, nics.length, "one .network per NIC");
        assert.deepEqual(semantics(networkd(nics)), semantics(r.files));
      }),
  );
}

/** Semantics a cloud-init v2 renderer keeps; on-link routes are left out. */
function cloudInitView(m: Map<string, Semantics>): Map<string, unknown> {
  return new Map(
    [...m].map(([k, s]) => [k, {
      mtu: s.mtu,
      addresses: s.addresses,
      routes: s.routes.filter((r) => r.includes(" via ")),
      dns: s.dns,
      domains: s.domains,
    }]),
  );
}

for (const [scenario, nics] of Object.entries(SCENARIOS)) {
  toolTest(
    `netplan generate accepts the cloud-init network-config under network: ${scenario}`,
    NETPLAN_MISSING,
    () =>
      withTemp(async (root) => {
        // What cloud-init writes on a netplan system: the v2 document under
        // `network:` in /etc/netplan/50-cloud-init.yaml.
        const doc = cloudInitNetworkConfig(nics);
        const wrapped = "network:\n" +
          doc.trimEnd().split("\n").map((l) => `  ${l}`).join("\n") + "\n";
        const r = await netplanGenerate(root, wrapped, "50-cloud-init.yaml");
        assert.equal(r.code, 0, r.stderr);
        assert.doesNotMatch(r.stderr, /Conflicting default route/);
        // gateway6 is the one thing netplan may warn about (deprecated).
        const warnings = r.stderr.split("\n").filter((l) =>
          l.trim() && !/gateway6|Default routes' section/.test(l)
        );
        assert.deepEqual(warnings, []);
        assert.equal(
          r.files.filter((f) => f.name.endsWith(".network")).length,
          nics.length,
        );
        const ours = semantics(networkd(nics));
        const theirs = semantics(r.files);
        assert.deepEqual(cloudInitView(theirs), cloudInitView(ours));
        for (const [k, s] of theirs) {
          assert.equal(s.linkName, ours.get(k)?.linkName, `${k}: name`);
          assert.equal(s.acceptRa, "no", `${k}: accept-ra`);
        }
      }),
  );
}

/** `doc` parsed by PyYAML (YAML 1.1, what netplan's and cloud-init's Python reads). */
async function pyYaml(doc: string): Promise<unknown> {
  const r = await run(PYYAML!, [
    "-c",
    "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
  ], { stdin: doc });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

toolTest(
  "YAML 1.1 reads MACs, domains and addresses as strings (python3-yaml)",
  PYYAML ? null : "python3 with yaml not installed (python3-yaml)",
  async () => {
    const nics = [DUAL, nic(1)];
    // deno-lint-ignore no-explicit-any
    const np = await pyYaml(netplan(nics)) as any;
    // deno-lint-ignore no-explicit-any
    const ci = await pyYaml(cloudInitNetworkConfig(nics)) as any;
    assert.equal(np.network.version, 2);
    assert.equal(ci.version, 2);
    assert.equal(ci.network, undefined);
    for (const eths of [np.network.ethernets, ci.ethernets]) {
      const e0 = eths.eth0;
      assert.equal(e0.match.macaddress, "52:54:00:12:34:56");
      assert.equal(e0["set-name"], "eth0");
      assert.equal(e0.mtu, 1500);
      assert.equal(e0.dhcp4, false);
      assert.equal(e0["accept-ra"], false);
      assert.deepEqual(e0.addresses, ["10.80.0.5/24", "fd00:80::5/64"]);
      assert.deepEqual(e0.nameservers, {
        addresses: ["10.80.0.53", "fd00:80::53"],
        search: ["example.com", "yes", "1e3"],
      });
      assert.equal(eths.eth1.match.macaddress, "02:00:00:00:00:02");
      assert.equal(eths.eth1.routes, undefined);
    }
    assert.deepEqual(np.network.ethernets.eth0.routes, [
      { to: "default", via: "10.80.0.1" },
      { to: "default", via: "fd00:80::1" },
      { to: "2001:db8::/32", via: "fd00:80::fe" },
    ]);
    assert.equal(ci.ethernets.eth0.gateway6, "fd00:80::1");
    assert.deepEqual(ci.ethernets.eth0.routes, [
      { to: "0.0.0.0/0", via: "10.80.0.1" },
      { to: "2001:db8::/32", via: "fd00:80::fe" },
    ]);
  },
);

for (const [scenario, nics] of Object.entries(SCENARIOS)) {
  toolTest(
    `cloud-init's own renderers read the network-config: ${scenario}`,
    CLOUD_INIT ? null : "cloud-init not installed (optional)",
    () =>
      withTemp(async (dir) => {
        const input = join(dir, "network-config");
        await Deno.writeTextFile(input, cloudInitNetworkConfig(nics));
        const convert = (kind: string, distro: string) =>
          run(CLOUD_INIT!, [
            "devel",
            "net-convert",
            "--network-data",
            input,
            "--kind",
            "yaml",
            "--distro",
            distro,
            "--output-kind",
            kind,
            "--directory",
            join(dir, kind),
          ]);
        // networkd: the same addresses, routes, MTU and DNS as vmnic's.
        const nd = await convert("networkd", "debian");
        assert.equal(nd.code, 0, nd.stderr);
        const files = await networkdFiles(
          join(dir, "networkd/etc/systemd/network"),
        );
        assert.equal(files.length, nics.length);
        assert.deepEqual(
          cloudInitView(semantics(files)),
          cloudInitView(semantics(networkd(nics))),
        );
        // ifupdown (Debian 12's renderer) and sysconfig must not fail.
        // net-convert exits 0 even when a renderer throws: read stderr. One
        // traceback is cloud-init 22.4's and harmless: search domains
        // without servers fail its global-DNS step (logged, skipped) while
        // the interface still gets them (`dns-search`).
        const searchOnly = nics.some((n) =>
          !n.dns.nameservers?.length && (n.dns.search?.length || n.dns.domain)
        );
        for (
          const [kind, distro] of [["eni", "debian"], ["sysconfig", "rhel"]]
        ) {
          const r = await convert(kind, distro);
          assert.equal(r.code, 0, `${kind}: ${r.stderr}`);
          const tracebacks = r.stderr.match(/Traceback/g)?.length ?? 0;
          const known = searchOnly
            ? r.stderr.match(/InvalidCommand: Command missing \{'address'\}/g)
              ?.length ?? 0
            : 0;
          assert.equal(tracebacks, known, `${kind}: ${r.stderr}`);
        }
        const eni = await Deno.readTextFile(
          join(dir, "eni/etc/network/interfaces.d/50-cloud-init"),
        );
        for (const n of nics) {
          for (const ip of n.ips) {
            assert.ok(eni.includes(`address ${ip.address}/${ip.prefix}`), eni);
          }
          for (
            const d of n.dns.search ?? (n.dns.domain ? [n.dns.domain] : [])
          ) {
            assert.match(eni, new RegExp(`dns-search .*${d}`));
          }
        }
        assert.doesNotMatch(eni, /::\/64 gw|::0\/64/, "::/0 turned into ::/64");
      }),
  );
}

// ---------------------------------------------------------------------------
// A real systemd-networkd applies vmnic's networkd output

/** systemd-networkd's binary, or null. */
function networkdBinary(): string | null {
  for (
    const p of [
      "/lib/systemd/systemd-networkd",
      "/usr/lib/systemd/systemd-networkd",
    ]
  ) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* not here */ }
  }
  return null;
}

/** Why networkd cannot be run here, or null. */
async function networkdMissing(): Promise<string | null> {
  const bin = networkdBinary();
  if (!bin) return "systemd-networkd not installed (Debian package systemd)";
  const id = await run("id", ["-u"]).catch(() => null);
  if (id?.stdout.trim() !== "0") {
    return "needs root (network and mount namespaces)";
  }
  if (!which("unshare")) return "unshare not installed (util-linux)";
  const user = await run("id", ["systemd-network"]).catch(() => null);
  if (user?.code !== 0) return "no systemd-network user";
  return null;
}
const NETWORKD_MISSING = await networkdMissing();

/**
 * Runs in fresh network and mount namespaces: the `.network` units of
 * `$1` in /run/systemd/network (tmpfs over /run, /etc/systemd/network and
 * a read-only /sys, so networkd sees no udev, no D-Bus and no host
 * config), one veth per NIC (`name mac mtu` lines on stdin) standing in
 * for the guest's NICs, then systemd-networkd until `$2` static routes and
 * `$3` global addresses are there (10 s at most). Prints the addresses,
 * the routes and networkd's per-link state files.
 */
const NETWORKD_SCRIPT = String.raw`
set -eu
conf=$1 routes=$2 addrs=$3 bin=$4
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/network /run/systemd/netif
chown systemd-network:systemd-network /run/systemd/netif
cp "$conf"/*.network /run/systemd/network/
mount -t tmpfs tmpfs /etc/systemd/network
mount -t sysfs -o ro sysfs /sys
ip link set lo up
i=0
while read -r name mac; do
  ip link add "$name" type veth peer name "vmnicpeer$i"
  [ "$mac" = "-" ] || ip link set "$name" address "$mac"
  ip link set "vmnicpeer$i" up
  i=$((i + 1))
done
"$bin" >"$conf/networkd.log" 2>&1 &
pid=$!
for _ in $(seq 50); do
  r=$(( $(ip -4 route show proto static | wc -l) + $(ip -6 route show proto static | wc -l) ))
  a=$(ip -o addr show scope global | wc -l)
  [ "$r" -ge "$routes" ] && [ "$a" -ge "$addrs" ] && break
  sleep 0.2
done
echo "@@@ addr"; ip -j addr show
echo "@@@ route4"; ip -j -4 route show proto static
echo "@@@ route6"; ip -j -6 route show proto static
for f in /run/systemd/netif/links/*; do echo "@@@ link ${"$"}{f##*/}"; cat "$f"; done
kill "$pid"; wait "$pid" || true
`;

interface IpAddr {
  ifindex: number;
  ifname: string;
  mtu: number;
  addr_info: {
    family: string;
    local: string;
    prefixlen: number;
    scope: string;
  }[];
}
interface IpRoute {
  dst: string;
  gateway?: string;
  dev: string;
  scope?: string;
}

for (const [scenario, nics] of Object.entries(SCENARIOS)) {
  toolTest(
    `systemd-networkd applies vmnic's networkd output: ${scenario}`,
    NETWORKD_MISSING,
    () =>
      withTemp(async (dir) => {
        const files = networkd(nics);
        const want = semantics(files);
        for (const f of files) {
          await Deno.writeTextFile(join(dir, f.name), f.content);
        }
        const routes = files.map((f) =>
          f.content.match(/^\[Route\]$/gm)?.length ?? 0
        )
          .reduce((a, b) => a + b, 0);
        const addrs = nics.reduce((a, n) => a + n.ips.length, 0);
        const child = new Deno.Command("unshare", {
          args: [
            "--net",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            NETWORKD_SCRIPT,
            "sh",
            dir,
            String(routes),
            String(addrs),
            networkdBinary()!,
          ],
          stdin: "piped",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const w = child.stdin.getWriter();
        await w.write(
          new TextEncoder().encode(
            nics.map((n) => `${n.ifName} ${n.mac ?? "-"}\n`).join(""),
          ),
        );
        await w.close();
        const out = await child.output();
        const dec = new TextDecoder();
        const stdout = dec.decode(out.stdout);
        const log = await Deno.readTextFile(join(dir, "networkd.log")).catch(
          () => "",
        );
        assert.equal(out.code, 0, dec.decode(out.stderr) + log);

        const sections = new Map<string, string>();
        for (const part of stdout.split(/^@@@ /m).slice(1)) {
          const nl = part.indexOf("\n");
          sections.set(part.slice(0, nl), part.slice(nl + 1));
        }
        const links = JSON.parse(sections.get("addr")!) as IpAddr[];
        const routes4 = JSON.parse(sections.get("route4") || "[]") as IpRoute[];
        const routes6 = JSON.parse(sections.get("route6") || "[]") as IpRoute[];
        for (const n of nics) {
          const link = links.find((l) => l.ifname === n.ifName);
          assert.ok(link, `${n.ifName} missing`);
          const w = want.get(n.mac ?? `name=${n.ifName}`)!;
          const global = link.addr_info.filter((a) => a.scope === "global")
            .map((a) => `${a.local}/${a.prefixlen}`).sort();
          assert.deepEqual(
            global,
            w.addresses,
            `${n.ifName} addresses\n${log}`,
          );
          const ll = link.addr_info.some((a) => a.scope === "link");
          assert.equal(ll, w.linkLocal === "ipv6", `${n.ifName} link-local`);
          if (w.mtu) assert.equal(String(link.mtu), w.mtu, `${n.ifName} MTU`);
          const got = [...routes4, ...routes6].filter((r) => r.dev === n.ifName)
            .map((r) => {
              const dst = r.dst !== "default"
                ? r.dst
                : routes6.includes(r)
                ? "::/0"
                : "0.0.0.0/0";
              return [
                dst,
                r.gateway ? `via ${r.gateway}` : "",
                !r.gateway && r.scope === "link" ? "scope link" : "",
              ].filter(Boolean).join(" ");
            }).sort();
          assert.deepEqual(got, w.routes, `${n.ifName} routes\n${log}`);
          const state = sections.get(`link ${link.ifindex}`) ?? "";
          const field = (k: string) =>
            (new RegExp(`^${k}=(.*)$`, "m").exec(state)?.[1] ?? "")
              .split(/\s+/).filter(Boolean).sort();
          assert.deepEqual(field("DNS"), w.dns, `${n.ifName} DNS`);
          assert.deepEqual(field("DOMAINS"), w.domains, `${n.ifName} domains`);
          assert.match(
            state,
            new RegExp(`NETWORK_FILE=.*/10-vmnic-${n.ifName}\\.network`),
          );
        }
      }),
  );
}
