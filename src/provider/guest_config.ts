/**
 * The guest side of a VM's records, so operators don't hand-write it: the
 * kernel `ip=` parameter for NIC 0, netplan v2, systemd-networkd units, and
 * a cloud-init `network-config` (v2). Every format but `cmdline` covers
 * every NIC it is given (the live ones: `active` and `quiesced`), matched by
 * MAC, with its MTU, its IPv4 and IPv6 addresses, routes and DNS.
 *
 * ## The default route
 *
 * The CNI result decides whether the guest has a default route; vmnic
 * decides only which NIC carries it, so a multi-NIC guest never ends up
 * with two competing default routes (netplan rejects those as
 * "Conflicting default route declarations"):
 *
 * - For each IP family there is at most one default route (`0.0.0.0/0`,
 *   `::/0`). It goes on the lowest-index NIC whose CNI result routes that
 *   family's default through a next hop: the route's own `gw`, else that
 *   NIC's gateway of the family. So NIC 0 carries it when it can, and a NIC
 *   0 without a gateway hands it to the next NIC that has one.
 * - The other NICs get no default route and no metric: their connected
 *   subnets (from their addresses) and their non-default routes only.
 * - A non-default route keeps its own NIC: `via` its `gw`, else that NIC's
 *   gateway of the route's family, else on-link (networkd `Scope=link`).
 * - A NIC with a gateway whose CNI result has no default route gets none:
 *   CNI's `gateway` names the subnet's router, it does not ask for a route.
 *
 * ## The formats
 *
 * - `cmdline`: the kernel `ip=` parameter, for NIC 0 only and IPv4 only
 *   (the kernel knows no more): address, the IPv4 default gateway when NIC
 *   0 carries it, netmask, hostname, device, `off`, up to two IPv4 DNS
 *   servers. No MTU, no other routes, no search domains, no IPv6.
 * - `netplan` (`50-vmnic.yaml` in `/etc/netplan/`, mode 0600): one
 *   `ethernets` entry per NIC with `match: macaddress`, `set-name`, `mtu`,
 *   `addresses`, `routes` (the default as `to: default`) and `nameservers`;
 *   DHCP and router advertisements off, IPv6 link-local addressing only on
 *   NICs with IPv6. Checked with Debian's `netplan generate`
 *   (tests/provider/guest_config_test.ts).
 * - `networkd`: per NIC a `.network` unit (`[Match] MACAddress=` and
 *   `Type=ether`: with udev, which reports device types, a bridge, bond or
 *   VLAN that inherits the MAC is not matched too; `[Link] MTUBytes=`;
 *   `Address=` for both families; `DNS=`, `Domains=`; one `[Route]` per
 *   route with `Destination=` and `Gateway=`, never `Destination=default`,
 *   which networkd ignores as invalid) and a `.link` file that udev applies
 *   when the device appears, naming it as netplan's `set-name` does. The
 *   same settings as what `netplan generate` writes for the `netplan`
 *   output (netplan matches `PermanentMACAddress=` instead), and applied
 *   as such by systemd-networkd in the tests.
 * - `cloud-init`: a NoCloud `network-config` file in cloud-init's v2
 *   format. As cloud-init documents for that file, it has no top-level
 *   `network:` key (`version: 2` and `ethernets:` at the top; the file name
 *   says it is network configuration). It keeps to the subset of netplan's
 *   schema that cloud-init's own renderers (ifupdown, networkd, sysconfig,
 *   NetworkManager) read, because guests without netplan have cloud-init
 *   translate it; guests with netplan get it passed through. Hence: the
 *   IPv4 default is `to: 0.0.0.0/0` (cloud-init before 25.3 does not know
 *   `to: default`); the IPv6 default is `gateway6:`, because cloud-init
 *   before 23.1 (Debian 12 ships 22.4.2) renders a `to: ::/0` route as
 *   `::/64` (LP #2003562); netplan accepts `gateway6` with a deprecation
 *   warning. On-link routes (no next hop) are left out:
 *   cloud-init's ifupdown renderer fails on a route without `via`. No
 *   `link-local` (not in that subset).
 *
 * YAML values that are strings (names, MACs, addresses, domains) are
 * written double-quoted, so none is read as a number, a boolean or null
 * (`52:54:00:12:34:56` is a sexagesimal integer to a YAML 1.1 parser). DNS
 * servers and search domains that hold white space or control characters
 * cannot be names or addresses and are left out, so no value can break a
 * file's syntax.
 *
 * @module
 */
import type { IpConfig, NicConfig } from "./types.ts";
import { InvalidInputError, OperationError } from "./errors.ts";

/** Formats `guest-config` knows. */
export const GUEST_CONFIG_FORMATS = [
  "cmdline",
  "netplan",
  "networkd",
  "cloud-init",
] as const;
/** One of {@linkcode GUEST_CONFIG_FORMATS}. */
export type GuestConfigFormat = typeof GUEST_CONFIG_FORMATS[number];

/** A generated file (networkd units, netplan, cloud-init) or text (cmdline). */
export interface GuestConfigFile {
  /** Suggested file name in the guest (empty for `cmdline`). */
  name: string;
  /** The text. */
  content: string;
}

/** A route as the guest gets it. */
interface GuestRoute {
  family: 4 | 6;
  /** Destination CIDR; `0.0.0.0/0` or `::/0` for a default route. */
  to: string;
  isDefault: boolean;
  /** Next hop; absent for an on-link route. */
  via?: string;
}

/** A NIC as the guest configures it, after the default-route rule. */
interface GuestNic {
  name: string;
  mac?: string;
  mtu?: number;
  /** CIDRs, both families. */
  addresses: string[];
  /** It has an IPv6 address. */
  v6: boolean;
  /** Default routes first, then the others in the CNI result's order. */
  routes: GuestRoute[];
  nameservers: string[];
  search: string[];
}

/**
 * The kernel `ip=` parameter for NIC 0: IPv4 only, as the kernel allows
 * (`ip=<client>::<gw>:<netmask>:<hostname>:<device>:off[:<dns0>:<dns1>]`).
 * The gateway field is set only when NIC 0 carries the IPv4 default route
 * (see the module's default-route rule). Returns null when NIC 0 has no
 * IPv4 address.
 */
export function kernelCmdline(vmId: string, nics: NicConfig[]): string | null {
  const nic = nics.find((n) => n.index === 0) ?? nics[0];
  const v4 = nic?.ips.find((ip) => ip.version === 4);
  if (!nic || !v4) return null;
  const planned = plan(nics).get(nic);
  const gw = planned?.routes.find((r) => r.isDefault && r.family === 4)?.via;
  const dns = (planned?.nameservers ?? []).filter((s) => !s.includes(":"))
    .slice(0, 2);
  const fields = [
    v4.address,
    "",
    gw ?? "",
    prefixToNetmask(v4.prefix),
    vmId.slice(0, 63),
    nic.ifName,
    "off",
    ...dns,
  ];
  return `ip=${fields.join(":")}`;
}

/**
 * A netplan v2 document (`/etc/netplan/50-vmnic.yaml`) covering every NIC,
 * matched by MAC and renamed to its `ifName`; one default route per IP
 * family (see the module's default-route rule), as `to: default`.
 */
export function netplan(nics: NicConfig[]): string {
  const lines = ["network:", "  version: 2", "  ethernets:"];
  for (const g of plan(nics).values()) {
    lines.push(...v2Ethernet(g, "netplan", "    "));
  }
  return lines.join("\n") + "\n";
}

/**
 * A cloud-init `network-config` file (NoCloud and other datasources that
 * take one) in cloud-init's v2 format: `version: 2` at the top, no
 * `network:` key, as cloud-init documents for that file. The same NICs,
 * addresses, routes and DNS as {@linkcode netplan}, within the subset
 * cloud-init's own renderers read (see the module documentation).
 */
export function cloudInitNetworkConfig(nics: NicConfig[]): string {
  const lines = ["version: 2", "ethernets:"];
  for (const g of plan(nics).values()) {
    lines.push(...v2Ethernet(g, "cloud-init", "  "));
  }
  return lines.join("\n") + "\n";
}

/**
 * systemd-networkd files for every NIC: a `.network` unit matched by MAC
 * (`10-vmnic-<ifName>.network`) and a `.link` file that gives the
 * interface its `ifName` (`10-vmnic-<ifName>.link`; none when the MAC is
 * unknown, then the unit matches by name). One default route per IP family
 * (see the module's default-route rule).
 */
export function networkd(nics: NicConfig[]): GuestConfigFile[] {
  const files: GuestConfigFile[] = [];
  for (const g of plan(nics).values()) {
    const match = g.mac ? [`MACAddress=${g.mac}`, "Type=ether"] : [
      `Name=${g.name}`,
    ];
    const lines = ["[Match]", ...match, ""];
    if (g.mtu !== undefined) lines.push("[Link]", `MTUBytes=${g.mtu}`, "");
    lines.push(
      "[Network]",
      "DHCP=no",
      "IPv6AcceptRA=no",
      `LinkLocalAddressing=${g.v6 ? "ipv6" : "no"}`,
      ...g.addresses.map((a) => `Address=${a}`),
      ...g.nameservers.map((s) => `DNS=${s}`),
      ...(g.search.length ? [`Domains=${g.search.join(" ")}`] : []),
    );
    for (const r of g.routes) {
      lines.push("", "[Route]", `Destination=${r.to}`);
      lines.push(r.via ? `Gateway=${r.via}` : "Scope=link");
    }
    files.push({
      name: `10-vmnic-${g.name}.network`,
      content: lines.join("\n") + "\n",
    });
    if (g.mac) {
      const link = ["[Match]", ...match, "", "[Link]", `Name=${g.name}`];
      if (g.mtu !== undefined) link.push(`MTUBytes=${g.mtu}`);
      files.push({
        name: `10-vmnic-${g.name}.link`,
        content: link.join("\n") + "\n",
      });
    }
  }
  return files;
}

/** `16` → `255.255.0.0`. */
export function prefixToNetmask(prefix: number): string {
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return [24, 16, 8, 0].map((s) => (mask >>> s) & 0xff).join(".");
}

/**
 * The guest config of a VM's live NICs in `format`. Throws
 * `InvalidInputError` for an unknown format and `OperationError` when the
 * format cannot express the NICs (the kernel `ip=` needs IPv4 on NIC 0).
 */
export function renderGuestConfig(
  vmId: string,
  nics: NicConfig[],
  format: GuestConfigFormat,
): GuestConfigFile[] {
  const op = "guest-config";
  switch (format) {
    case "cmdline": {
      const line = kernelCmdline(vmId, nics);
      if (!line) {
        throw new OperationError(
          op,
          vmId,
          "NIC 0 has no IPv4 address for the kernel ip= parameter",
        );
      }
      return [{ name: "", content: line + "\n" }];
    }
    case "netplan":
      return [{ name: "50-vmnic.yaml", content: netplan(nics) }];
    case "networkd":
      return networkd(nics);
    case "cloud-init":
      return [{
        name: "network-config",
        content: cloudInitNetworkConfig(nics),
      }];
    default:
      throw new InvalidInputError(
        op,
        vmId,
        `unknown format ${JSON.stringify(format)}: use ${
          GUEST_CONFIG_FORMATS.join(", ")
        }`,
      );
  }
}

/** One `ethernets` entry of a netplan or cloud-init v2 document. */
function v2Ethernet(
  g: GuestNic,
  flavor: "netplan" | "cloud-init",
  ind: string,
): string[] {
  const q = JSON.stringify;
  const out = [`${ind}${q(g.name)}:`];
  const i = ind + "  ";
  if (g.mac) {
    out.push(`${i}match:`, `${i}  macaddress: ${q(g.mac)}`);
    out.push(`${i}set-name: ${q(g.name)}`);
  }
  if (g.mtu !== undefined) out.push(`${i}mtu: ${g.mtu}`);
  out.push(`${i}dhcp4: false`, `${i}dhcp6: false`, `${i}accept-ra: false`);
  if (flavor === "netplan") {
    out.push(`${i}link-local: ${g.v6 ? '["ipv6"]' : "[]"}`);
  }
  if (g.addresses.length) {
    out.push(`${i}addresses:`, ...g.addresses.map((a) => `${i}  - ${q(a)}`));
  }
  let routes = g.routes;
  if (flavor === "cloud-init") {
    const gw6 = routes.find((r) => r.isDefault && r.family === 6)?.via;
    if (gw6) out.push(`${i}gateway6: ${q(gw6)}`);
    routes = routes.filter((r) => r.via && !(r.isDefault && r.family === 6));
  }
  if (routes.length) {
    out.push(`${i}routes:`);
    for (const r of routes) {
      const to = r.isDefault && flavor === "netplan" ? "default" : q(r.to);
      out.push(`${i}  - to: ${to}`);
      if (r.via) out.push(`${i}    via: ${q(r.via)}`);
    }
  }
  if (g.nameservers.length || g.search.length) {
    out.push(`${i}nameservers:`);
    if (g.nameservers.length) {
      out.push(
        `${i}  addresses: [${g.nameservers.map((s) => q(s)).join(", ")}]`,
      );
    }
    if (g.search.length) {
      out.push(`${i}  search: [${g.search.map((s) => q(s)).join(", ")}]`);
    }
  }
  return out;
}

/**
 * Applies the default-route rule: per NIC (in index order) what the guest
 * configures. The map keeps the callers' NIC objects as keys.
 */
function plan(nics: NicConfig[]): Map<NicConfig, GuestNic> {
  const sorted = [...nics].sort((a, b) => a.index - b.index);
  const owner = new Map<4 | 6, NicConfig>();
  for (const family of [4, 6] as const) {
    const nic = sorted.find((n) => defaultVia(n, family) !== undefined);
    if (nic) owner.set(family, nic);
  }
  const out = new Map<NicConfig, GuestNic>();
  for (const nic of sorted) {
    const routes: GuestRoute[] = [];
    for (const family of [4, 6] as const) {
      if (owner.get(family) !== nic) continue;
      routes.push({
        family,
        to: family === 4 ? "0.0.0.0/0" : "::/0",
        isDefault: true,
        via: defaultVia(nic, family),
      });
    }
    const seen = new Set<string>();
    for (const r of nic.routes) {
      if (!isToken(r.dst) || isDefaultDst(r.dst)) continue;
      const family = familyOf(r.dst);
      const via = hopOf(nic, family, r.gw);
      const key = `${r.dst} ${via ?? ""}`;
      if (seen.has(key)) continue;
      seen.add(key);
      routes.push(
        via
          ? { family, to: r.dst, isDefault: false, via }
          : { family, to: r.dst, isDefault: false },
      );
    }
    const search = nic.dns.search?.length
      ? nic.dns.search
      : nic.dns.domain
      ? [nic.dns.domain]
      : [];
    out.set(nic, {
      name: nic.ifName,
      ...(nic.mac ? { mac: nic.mac.toLowerCase() } : {}),
      ...(Number.isInteger(nic.mtu) && nic.mtu! > 0 ? { mtu: nic.mtu } : {}),
      addresses: nic.ips.map(cidr),
      v6: nic.ips.some((ip) => ip.version === 6),
      routes,
      nameservers: (nic.dns.nameservers ?? []).filter(isToken),
      search: search.filter(isToken),
    });
  }
  return out;
}

/**
 * The next hop of `nic`'s default route of `family`, when its CNI result
 * has one and a hop for it: the route's `gw`, else the NIC's gateway.
 */
function defaultVia(nic: NicConfig, family: 4 | 6): string | undefined {
  for (const r of nic.routes) {
    if (!isDefaultDst(r.dst) || familyOf(r.dst) !== family) continue;
    const via = hopOf(nic, family, r.gw);
    if (via) return via;
  }
  return undefined;
}

/** A route's next hop: its `gw` when of its family, else the NIC's gateway. */
function hopOf(
  nic: NicConfig,
  family: 4 | 6,
  gw: string | undefined,
): string | undefined {
  if (gw && isToken(gw) && familyOf(gw) === family) return gw;
  const own = nic.ips.find((ip) => ip.version === family && ip.gateway)
    ?.gateway;
  return own && isToken(own) ? own : undefined;
}

function isDefaultDst(dst: string): boolean {
  return dst.endsWith("/0");
}

function familyOf(addr: string): 4 | 6 {
  return addr.includes(":") ? 6 : 4;
}

/** A non-empty value without white space, quotes or control characters. */
function isToken(s: unknown): s is string {
  // deno-lint-ignore no-control-regex
  return typeof s === "string" && /^[^\s"'\\\x00-\x1f\x7f]+$/.test(s);
}

function cidr(ip: IpConfig): string {
  return `${ip.address}/${ip.prefix}`;
}
