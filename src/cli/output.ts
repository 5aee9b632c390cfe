/**
 * Human output shared by commands: the NIC table.
 *
 * @module
 */
import type { NicConfig } from "../provider/types.ts";
import { policySummary } from "../provider/policy.ts";

/** NICs as a table, one row each. */
export function nicTable(nics: NicConfig[]): string {
  if (!nics.length) return "no NICs";
  const rows = nics.map((n) => [
    n.vmId,
    String(n.index),
    n.state,
    n.tap,
    n.ifName,
    n.mac ?? "-",
    n.ips.map((ip) => `${ip.address}/${ip.prefix}`).join(",") || "-",
    n.network,
    String(n.numQueues),
    n.id,
  ]);
  const head = [
    "VM",
    "IDX",
    "STATE",
    "TAP",
    "VETH",
    "MAC",
    "IPS",
    "NETWORK",
    "QUEUES",
    "ID",
  ];
  // Clone NICs: the guest's identity beside the network's.
  if (nics.some((n) => n.guest)) {
    head.push("GUEST");
    nics.forEach((n, i) =>
      rows[i].push(
        n.guest
          ? `${n.guest.mac} ${
            n.guest.ips.map((ip) => `${ip.address}/${ip.prefix}`).join(",")
          }`
          : "-",
      )
    );
  }
  // The policy in effect, in a few words (docs/policy.md).
  if (nics.some((n) => n.policy)) {
    head.push("POLICY");
    nics.forEach((n, i) => rows[i].push(policySummary(n.policy)));
  }
  const table = [head, ...rows];
  const widths = head.map((_, i) => Math.max(...table.map((r) => r[i].length)));
  const lines = table.map((r) =>
    r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()
  );
  for (const n of nics) {
    if (n.error) lines.push(`  ${n.vmId}/${n.index}: ${n.error}`);
  }
  return lines.join("\n");
}
