/**
 * `vmnic restore-records`: the way out of a lost or emptied database.
 *
 * @module
 */
import { defineCommand } from "../command.ts";

export default defineCommand({
  name: "restore-records",
  usage: "vmnic restore-records",
  positionals: [0, 0],
  options: {},
  details: [
    "vmnic writes a backup of each VM's records (<root-dir>/records/<vm>.jsonl)",
    "before every change commits. When vmnic.db is lost or emptied, vmnic",
    "refuses to run (it would take the host's VMs for none); this command",
    "rebuilds the database from those backups. Run `vmnic verify` or",
    "`vmnic recover` on the VMs afterwards.",
  ].join("\n"),
  provider: "restore",
  parse: () => ({}),
  async run(_i, { provider }) {
    const vms = await provider.vms();
    return { restored: vms.map((v) => v.vmId), installId: provider.installId };
  },
  human: (r) =>
    `restored the records of ${r.restored.length} VM(s)` +
    (r.restored.length ? `: ${r.restored.join(", ")}` : ""),
});
