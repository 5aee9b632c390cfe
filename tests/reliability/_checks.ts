/**
 * Checks the failure suites make of one VM after a crash, a signal or a
 * recovery: that it is whole (the NICs asked for, each `active` with a MAC,
 * `verify` ok, one lease per NIC, the same identity as before) or wholly
 * gone (no record, netns, lease, lock file or backup). Records are read
 * with the CLI or, to save the start-up of a process, with the library.
 *
 * @module
 */
import { join } from "node:path";
import { Journal } from "../../src/store/journal.ts";
import {
  type CliRun,
  describe,
  installIdOf,
  leaseFiles,
  leaseOwner,
  nicIdentity,
  type NicJson,
  prefixedNetns,
  type TestEnv,
} from "./_env.ts";

/** How records are read. */
export type Via = "cli" | "library";

/** A VM's NICs, or why they could not be read. */
export async function nicsOf(
  env: TestEnv,
  vm: string,
  via: Via = "cli",
): Promise<NicJson[] | string> {
  if (via === "library") {
    try {
      const p = await env.open();
      try {
        return (await p.list({ vmId: vm })) as unknown as NicJson[];
      } finally {
        p.close();
      }
    } catch (e) {
      return `list ${vm}: ${(e as Error).name}: ${(e as Error).message}`;
    }
  }
  const r = await env.cli(["list", "--vm", vm]);
  if (r.code !== 0) return `list ${vm}: ${describe(r)}`;
  return JSON.parse(r.stdout) as NicJson[];
}

/** The VM ids recorded, or why they could not be read. */
export async function vmIds(
  env: TestEnv,
  via: Via = "cli",
): Promise<string[] | string> {
  if (via === "library") {
    try {
      const p = await env.open();
      try {
        return (await p.vms()).map((v) => v.vmId);
      } finally {
        p.close();
      }
    } catch (e) {
      return `vms: ${(e as Error).name}: ${(e as Error).message}`;
    }
  }
  const r = await env.cli(["vms"]);
  if (r.code !== 0) return `vms: ${describe(r)}`;
  return (JSON.parse(r.stdout) as { vmId: string }[]).map((v) => v.vmId);
}

/** `verify`: null when ok, else what it said. */
export async function verifyProblems(
  env: TestEnv,
  vm: string,
  via: Via = "cli",
): Promise<string | null> {
  if (via === "library") {
    try {
      const p = await env.open();
      try {
        const v = await p.verify(vm);
        return v.ok ? null : `verify ${vm}: ${v.problems.join("; ")}`;
      } finally {
        p.close();
      }
    } catch (e) {
      return `verify ${vm}: ${(e as Error).name}: ${(e as Error).message}`;
    }
  }
  const r = await env.cli(["verify", vm]);
  if (r.code === 0) return null;
  return `verify ${vm}: ${describe(r)}${r.stdout ? ` ${r.stdout}` : ""}`;
}

/** host-local leases held by the VM's container id: file → IP. */
export async function leasesOf(env: TestEnv, vm: string): Promise<string[]> {
  const installId = await installIdOf(env);
  const out: string[] = [];
  for (const f of await leaseFiles(env.ipamDir)) {
    const owner = await leaseOwner(join(env.ipamDir, f));
    if (installId && owner === `vmnic-${installId}-${vm}`) {
      out.push(f.split("/").pop()!);
    } else if (!installId && owner?.endsWith(`-${vm}`)) {
      out.push(f.split("/").pop()!);
    }
  }
  return out.sort();
}

/** What a whole VM must look like. */
export interface Whole {
  /** The NIC indices it has. */
  indices: number[];
  /** Its NICs' identity must be this one (`nicIdentity`). */
  identity?: string;
  /** Expected state of every NIC (default `active`). */
  state?: string;
}

/**
 * Problems with a VM that must be whole: exactly the NICs asked for, each
 * in its state with a MAC and an MTU, `verify` ok, one lease per NIC (the
 * NIC's IP), and the identity given.
 */
export async function checkWhole(
  env: TestEnv,
  vm: string,
  want: Whole,
  via: Via = "cli",
): Promise<{ problems: string[]; nics: NicJson[] }> {
  const problems: string[] = [];
  const nics = await nicsOf(env, vm, via);
  if (typeof nics === "string") return { problems: [nics], nics: [] };
  const indices = nics.map((n) => n.index).sort((a, b) => a - b);
  if (indices.join() !== [...want.indices].sort((a, b) => a - b).join()) {
    problems.push(`${vm} has NICs [${indices}], want [${want.indices}]`);
  }
  for (const n of nics) {
    if (n.state !== (want.state ?? "active")) {
      problems.push(
        `${vm}/${n.index} is ${n.state}${n.error ? ` (${n.error})` : ""}`,
      );
    }
    if (!n.mac || !n.mtu) {
      problems.push(`${vm}/${n.index} has no MAC/MTU: ${n.mac} ${n.mtu}`);
    }
  }
  const v = await verifyProblems(env, vm, via);
  if (v) problems.push(v);
  // One lease per NIC IP, held by this install; none other held by the
  // VM's container id. (A NIC a VM took from the warm pool keeps the
  // container id of the slot it was made in.)
  const installId = await installIdOf(env);
  const ips = nics.flatMap((n) => n.ips.map((ip) => ip.address)).sort();
  for (const ip of ips) {
    const owners: string[] = [];
    for (const f of await leaseFiles(env.ipamDir)) {
      if (f.split("/").pop() !== ip) continue;
      owners.push(String(await leaseOwner(join(env.ipamDir, f))));
    }
    if (owners.length !== 1 || !owners[0].startsWith(`vmnic-${installId}-`)) {
      problems.push(`${vm}: IP ${ip} leased to [${owners}]`);
    }
  }
  const extra = (await leasesOf(env, vm)).filter((ip) => !ips.includes(ip));
  if (extra.length) problems.push(`${vm}: leases of no NIC [${extra}]`);
  if (want.identity !== undefined && nicIdentity(nics) !== want.identity) {
    problems.push(
      `${vm} changed: was ${want.identity}, now ${nicIdentity(nics)}`,
    );
  }
  return { problems, nics };
}

/**
 * Problems with a VM that must be wholly gone: no VM record, no NIC
 * record, no netns, no lease, no lock file, no record backup.
 */
export async function checkGone(
  env: TestEnv,
  vm: string,
  via: Via = "cli",
): Promise<string[]> {
  const problems: string[] = [];
  const ids = await vmIds(env, via);
  if (typeof ids === "string") problems.push(ids);
  else if (ids.includes(vm)) problems.push(`${vm} still recorded`);
  const nics = await nicsOf(env, vm, via);
  if (typeof nics === "string") problems.push(nics);
  else if (nics.length) {
    problems.push(`${vm} still has NIC records ${nics.map((n) => n.index)}`);
  }
  if ((await prefixedNetns(env)).includes(env.prefix + vm)) {
    problems.push(`netns ${env.prefix + vm} left`);
  }
  const leases = await leasesOf(env, vm);
  if (leases.length) problems.push(`${vm}: leases left [${leases}]`);
  try {
    await Deno.lstat(join(env.runDir, "locks", `${vm}.lock`));
    problems.push(`${vm}: lock file left`);
  } catch { /* gone */ }
  if (new Journal(env.rootDir).vmIds().includes(vm)) {
    problems.push(`${vm}: record backup left`);
  }
  return problems;
}

/** NICs of the VM left `adding` or `deleting` (needing an operation). */
export function unsettled(nics: NicJson[]): string[] {
  return nics.filter((n) => n.state === "adding" || n.state === "deleting")
    .map((n) => `${n.vmId}/${n.index} left ${n.state}`);
}

/** Cases tried, failures and leaks of a suite, and its summary line. */
export class Tally {
  tried = 0;
  failures: string[] = [];
  leaks: string[] = [];

  /** One case: failed when it has problems. */
  case(name: string, problems: (string | null | undefined | false)[]): void {
    this.tried++;
    const real = problems.filter((p): p is string => !!p);
    if (real.length) this.failures.push(`${name}: ${real.join("; ")}`);
  }

  /** Leaks found after a case (charged to it). */
  leaked(name: string, leaks: string[]): void {
    for (const l of leaks) this.leaks.push(`${name}: ${l}`);
  }

  /** Prints the failures, the leaks and the summary line. */
  print(suite: string): void {
    for (const f of this.failures) console.log(`FAIL ${f}`);
    for (const l of this.leaks) console.log(`LEAK ${l}`);
    console.log(
      `${suite}: ${this.tried} cases tried, ${this.failures.length} failures, ${this.leaks.length} leaks found`,
    );
  }
}

/** Problems unless `r` exited `code`. */
export function exitIs(r: CliRun, code: number, what: string): string | null {
  return r.code === code ? null : `${what}: want exit ${code}, ${describe(r)}`;
}
