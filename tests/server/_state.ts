/**
 * What an install holds on the host, for the daemon tests: a snapshot
 * (records, pool slots, netns, host veths, leases, lock files, record
 * backups) to show a request changed nothing, and the leaks left after
 * everything was deleted.
 *
 * @module
 */
import { join } from "node:path";
import { type Fixture, vethsOnBridge } from "../provider/_fixture.ts";

/** Names in a dir, sorted; `[]` when it does not exist. */
export async function namesIn(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) out.push(e.name);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort();
}

/** What the install holds, read with the library and iproute2. */
export interface Holdings {
  /** `vms()`, whole. */
  vms: unknown[];
  /** `list()`: every VM NIC, whole. */
  nics: unknown[];
  /** `list({ pool: true })`: the pool's slot NICs. */
  slots: unknown[];
  /** netns names with the prefix (prefix stripped). */
  netns: string[];
  /** Host veths on the fixture's bridge. */
  veths: string[];
  /** host-local leases (IPs). */
  leases: string[];
  /** Lock files in the run dir. */
  locks: string[];
  /** Record backups in the root dir. */
  backups: string[];
}

/** A snapshot of what the install holds. */
export async function holdings(fx: Fixture): Promise<Holdings> {
  const p = await fx.provider();
  try {
    return {
      vms: await p.vms(),
      nics: await p.list(),
      slots: await p.list({ pool: true }),
      netns: await fx.netns(),
      veths: (await vethsOnBridge(fx.bridge)).sort(),
      leases: await fx.leasedIps(),
      locks: await namesIn(join(fx.runDir, "locks")),
      backups: await namesIn(join(fx.rootDir, "records")),
    };
  } finally {
    p.close();
  }
}

/**
 * Everything that outlived the install's VMs and slots: netns with the
 * prefix, host veths on the bridge, leases, VM and NIC records, slot
 * records, lock files, record backups. Empty when nothing leaked.
 */
export async function leaks(fx: Fixture): Promise<string[]> {
  const h = await holdings(fx);
  const out: string[] = [];
  const note = (what: string, list: unknown[]) => {
    if (list.length) out.push(`${what}: ${JSON.stringify(list)}`);
  };
  note("netns", h.netns);
  note("host veths on the bridge", h.veths);
  note("host-local leases", h.leases);
  note("VM records", h.vms);
  note("NIC records", h.nics);
  note("pool slot records", h.slots);
  note("lock files", h.locks);
  // install.json is the install's identity, not a VM's.
  note("record backups", h.backups.filter((n) => n !== "install.json"));
  return out;
}
