/**
 * The guest side of a VM's records, so operators don't hand-write it: the
 * kernel `ip=` parameter for NIC 0, netplan v2, and systemd-networkd units.
 *
 * @module
 */
import type { IpConfig, NicConfig } from "./types.ts";
import { InvalidInputError, OperationError } from "./errors.ts";

/** Formats `guest-config` knows. */
export const GUEST_CONFIG_FORMATS = ["cmdline", "netplan", "networkd"] as const;
/** One of {@linkcode GUEST_CONFIG_FORMATS}. */
export type GuestConfigFormat = typeof GUEST_CONFIG_FORMATS[number];

/** A generated file (networkd units) or text (cmdline, netplan). */
export interface GuestConfigFile {
  /** Suggested file name in the guest (empty for `cmdline`). */
  name: string;
  /** The text. */
  content: string;
}

/**
 * The kernel `ip=` parameter for NIC 0: IPv4 only, as the kernel allows
 * (`ip=<client>::<gw>:<netmask>:<hostname>:<device>:off[:<dns0>:<dns1>]`).
 * Returns null when NIC 0 has no IPv4 address.
 */
export function kernelCmdline(vmId: string, nics: NicConfig[]): string | null {
  const nic = nics.find((n) => n.index === 0) ?? nics[0];
  const v4 = nic?.ips.find((ip) => ip.version === 4);
  if (!nic || !v4) return null;
  const dns = (nic.dns.nameservers ?? []).filter((s) => !s.includes(":"))
    .slice(0, 2);
  const fields = [
    v4.address,
    "",
    v4.gateway ?? "",
    prefixToNetmask(v4.prefix),
    vmId.slice(0, 63),
    nic.ifName,
    "off",
    ...dns,
  ];
  return `ip=${fields.join(":")}`;
}

/** A netplan v2 document covering every NIC, matched by MAC. */
export function netplan(nics: NicConfig[]): string {
  const lines = ["network:", "  version: 2", "  ethernets:"];
  for (const nic of nics) {
    lines.push(`    ${nic.ifName}:`);
    lines.push("      match:");
    lines.push(`        macaddress: "${nic.mac}"`);
    lines.push(`      set-name: ${nic.ifName}`);
    lines.push(`      mtu: ${nic.mtu}`);
    lines.push("      dhcp4: false");
    lines.push("      dhcp6: false");
    if (nic.ips.length) {
      lines.push("      addresses:");
      for (const ip of nic.ips) lines.push(`        - ${cidr(ip)}`);
    }
    const routes = routesOf(nic);
    if (routes.length) {
      lines.push("      routes:");
      for (const r of routes) {
        lines.push(`        - to: ${r.to}`);
        if (r.via) lines.push(`          via: ${r.via}`);
      }
    }
    const ns = nic.dns.nameservers ?? [];
    const search = nic.dns.search ?? (nic.dns.domain ? [nic.dns.domain] : []);
    if (ns.length || search.length) {
      lines.push("      nameservers:");
      if (ns.length) lines.push(`        addresses: [${ns.join(", ")}]`);
      if (search.length) lines.push(`        search: [${search.join(", ")}]`);
    }
  }
  return lines.join("\n") + "\n";
}

/** One systemd-networkd `.network` unit per NIC, matched by MAC. */
export function networkd(nics: NicConfig[]): GuestConfigFile[] {
  return nics.map((nic) => {
    const lines = [
      "[Match]",
      `MACAddress=${nic.mac}`,
      "",
      "[Link]",
      `MTUBytes=${nic.mtu}`,
      "",
      "[Network]",
      "DHCP=no",
      "IPv6AcceptRA=no",
      "LinkLocalAddressing=no",
      ...nic.ips.map((ip) => `Address=${cidr(ip)}`),
      ...(nic.dns.nameservers ?? []).map((s) => `DNS=${s}`),
      ...((nic.dns.search ?? (nic.dns.domain ? [nic.dns.domain] : [])).length
        ? [`Domains=${(nic.dns.search ?? [nic.dns.domain]).join(" ")}`]
        : []),
    ];
    for (const r of routesOf(nic)) {
      lines.push("", "[Route]", `Destination=${r.to}`);
      if (r.via) lines.push(`Gateway=${r.via}`);
    }
    return {
      name: `10-vmnic-${nic.ifName}.network`,
      content: lines.join("\n") + "\n",
    };
  });
}

/** Routes for the guest: the CNI result's, with the gateway of the matching family. */
function routesOf(nic: NicConfig): { to: string; via?: string }[] {
  const out: { to: string; via?: string }[] = [];
  for (const r of nic.routes) {
    const v6 = r.dst.includes(":");
    const gw = r.gw ?? nic.ips.find((ip) => (ip.version === 6) === v6)?.gateway;
    const to = r.dst === "0.0.0.0/0" || r.dst === "::/0" ? "default" : r.dst;
    // Two "default" routes (v4 and v6) are fine: netplan tells them by `via`.
    out.push(gw ? { to, via: gw } : { to });
  }
  return out;
}

function cidr(ip: IpConfig): string {
  return `${ip.address}/${ip.prefix}`;
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
