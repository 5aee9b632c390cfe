/**
 * The operations that make and unmake NICs (docs/state-machine.md):
 * `prepare`, `add` (idempotent: "the VM has these NICs"), `remove` and
 * `delete`, and the finishing of what a crashed run left half-done. Every
 * NIC leaves through `retireNic`.
 *
 * @module
 */
import { CniPluginNotFoundError } from "../cni/errors.ts";
import type { NetworkConfigList } from "../cni/config.ts";
import type { CniResult } from "../cni/result.ts";
import type { HookOperation } from "../hooks/types.ts";
import {
  type GuestRecord,
  newNicId,
  type NicRecord,
  type VmRecord,
} from "../store/types.ts";
import type { VmLock } from "../store/locks.ts";
import {
  getLinkByName,
  netnsTag,
  plumbNic,
  repairNic,
  tagNetns,
} from "../wiring/nic.ts";
import {
  checkpoint,
  containerIdOf,
  hooksOf,
  installOfTag,
  lockVm,
  mayMakeNetns,
  mayMakeNetnsCheck,
  netnsNameOf,
  netnsPathOf,
  netnsTagOf,
  pluginRunOptions,
  type ProviderContext,
  runHook,
  timePhase,
  withVmLock,
} from "./context.ts";
import { tracedOp } from "./oplog.ts";
import {
  ConflictError,
  InvalidInputError,
  messageOf,
  NotFoundError,
  OperationError,
  reasonOf,
  rephrase,
  RollbackIncompleteError,
  toVmnicError,
} from "./errors.ts";
import {
  hookFields,
  ipRequest,
  ipsOf,
  type NicRequest,
  toNicConfig,
} from "./records.ts";
import { releaseNic, retireNic } from "./retire.ts";
import { claimSlot } from "./pool.ts";
import {
  askedPolicy,
  asRecord,
  checkSamePolicy,
  planNicPolicy,
  policyFileOf,
  withCapabilityArgs,
} from "./nic_policy.ts";
import type { CapabilityArgs } from "./capabilities.ts";
import type { PolicyRecord } from "./policy.ts";
import { checkReady } from "./cni_verbs.ts";
import {
  keepsVethUp,
  tapPolicyFor,
  usesDhcpIpam,
  whileDhcpAdd,
} from "./dhcp.ts";
import {
  checkSameGuest,
  clonePathSpec,
  cloneSource,
  resolveGuest,
  sourceSpecs,
  toGuestIdentity,
} from "./clone.ts";
import { plumbClonePath, repairClonePath } from "../wiring/clone_path.ts";
import type {
  AddSpec,
  DeleteResult,
  NicConfig,
  PrepareOptions,
  RemoveResult,
  TeardownOptions,
  VmConfig,
} from "./types.ts";
import {
  normalizeMac,
  parseIpArg,
  specIndices,
  validateIndex,
  validateSpec,
  validateVmConfig,
  validateVmId,
} from "./validate.ts";

/** Why a NIC being rebuilt by recover is `adding` (see heldByRecover). */
export const REBUILDING = "being rebuilt by recover";

/** Default virtio queue size recorded when the VM config names none. */
export const DEFAULT_QUEUE_SIZE = 256;

/** One NIC an add will make. */
export interface NicPlan {
  index: number;
  list: NetworkConfigList;
  queues: number;
  queueSize: number;
  request: NicRequest;
  /**
   * Recover's rebuild of a recorded NIC: its record (same id, container id,
   * creation time) is reused, and kept (`adding`, with its MAC and IPs)
   * when the rebuild fails, for the next recover to try again.
   */
  rebuild?: NicRecord;
  /** The netns was made by this call: no device in it can be foreign. */
  freshNetns?: boolean;
  /** Its policy (docs/policy.md); none: the network's and built-in defaults. */
  policy?: PolicyRecord;
  /** CNI capability args for its plugins (`portMappings`, …). */
  capabilityArgs?: CapabilityArgs;
  /** The add call asked for a policy or capability args (no pool slot then). */
  policyAsked?: boolean;
  /**
   * A clone NIC's guest identity (docs/clones.md): the NIC gets the routed
   * path that translates it, not the TC redirects.
   */
  guest?: GuestRecord | null;
}

// ------------------------------------------------------------------ prepare

/**
 * Makes the VM's record and netns (idempotent) and returns the netns path.
 * A netns of that name that this install has no record of is refused,
 * unless `adopt` takes it (never one another vmnic install made).
 */
export async function prepare(
  ctx: ProviderContext,
  vmId: string,
  vmCfg: VmConfig = {},
  opts: PrepareOptions = {},
): Promise<string> {
  const op = "prepare";
  validateVmId(op, vmId);
  validateVmConfig(op, vmId, vmCfg);
  return await withVmLock(ctx, op, vmId, async (ctx) => {
    mayMakeNetnsCheck(ctx, op);
    let vm = await finishCrashedDelete(ctx, vmId);
    let recorded = false;
    if (!vm) {
      const adopted = adoptable(ctx, op, vmId, opts.adopt === true);
      mayMakeNetns(ctx, op);
      vm = newVmRecord(ctx, vmId, vmCfg.network ?? null);
      ctx.store.insertVm(vm);
      recorded = true;
      if (adopted) {
        ctx.kernel.inNetns(
          vm.netnsPath,
          (s) => tagNetns(s.conn, netnsTagOf(ctx)),
        );
        return vm.netnsPath;
      }
    } else mayMakeNetns(ctx, op);
    try {
      ensureVmNetns(ctx, vm);
    } catch (e) {
      if (recorded) ctx.store.deleteVm(vmId);
      throw e;
    }
    return vm.netnsPath;
  });
}

/**
 * For a VM without a record: whether its netns exists and may be adopted.
 * Throws {@linkcode ConflictError} for a netns this install did not make,
 * unless `adopt` (and it is not another vmnic install's).
 */
function adoptable(
  ctx: ProviderContext,
  op: string,
  vmId: string,
  adopt: boolean,
): boolean {
  const name = netnsNameOf(ctx, vmId);
  if (!ctx.kernel.netnsExists(name, ctx.config.netnsDir)) return false;
  const path = netnsPathOf(ctx, vmId);
  const owner = installOfTag(
    ctx.kernel.inNetns(path, (s) => netnsTag(s.conn)),
  );
  if (owner !== null && owner !== ctx.installId) {
    throw new ConflictError(
      op,
      vmId,
      `netns ${path} belongs to another vmnic install (install ${owner}); ` +
        `vmnic never takes over another install's netns`,
    );
  }
  if (!adopt) {
    throw new ConflictError(
      op,
      vmId,
      `netns ${path} exists but this install has no record of VM ${vmId}` +
        (owner === ctx.installId
          ? " (it was made here and its records are gone)"
          : " (it was not made by this vmnic install)") +
        `; vmnic does not take over a netns it did not make: ` +
        `\`vmnic prepare --adopt ${vmId}\` takes it on purpose, ` +
        `or remove it first`,
    );
  }
  return true;
}

function newVmRecord(
  ctx: ProviderContext,
  vmId: string,
  network: string | null,
): VmRecord {
  return {
    vmId,
    netnsPath: netnsPathOf(ctx, vmId),
    network,
    quiesced: false,
    deleting: false,
    createdAt: new Date().toISOString(),
  };
}

/** Makes the VM's netns if it is missing; tags it. Returns whether it made it. */
export function ensureVmNetns(ctx: ProviderContext, vm: VmRecord): boolean {
  const { created } = ctx.kernel.ensureNetns(
    netnsNameOf(ctx, vm.vmId),
    ctx.config.netnsDir,
  );
  if (created) {
    try {
      ctx.kernel.inNetns(
        vm.netnsPath,
        (s) => tagNetns(s.conn, netnsTagOf(ctx)),
      );
    } catch (e) {
      deleteVmNetns(ctx, vm.netnsPath);
      throw e;
    }
  }
  return created;
}

/** Deletes a netns by path; releases a custom netns dir left empty. */
export function deleteVmNetns(ctx: ProviderContext, path: string): void {
  const cut = path.lastIndexOf("/");
  const dir = path.slice(0, cut);
  ctx.kernel.deleteNetns(path.slice(cut + 1), dir);
  try {
    ctx.kernel.releaseNetnsDir(dir);
  } catch {
    // A mount left behind is tidiness, never a reason to fail a delete.
  }
}

// ---------------------------------------------------------------------- add

/**
 * Makes the VM have the NICs the specs describe (one NIC, index 0, when
 * none is given). A NIC that exists already is returned unchanged, so a
 * retried add is harmless; one that contradicts its spec is a conflict.
 * Any failure rolls back exactly what this call made.
 */
export async function add(
  ctx: ProviderContext,
  vmId: string,
  vmCfg: VmConfig = {},
  specs: AddSpec[] = [],
): Promise<NicConfig[]> {
  const op = "add";
  validateVmId(op, vmId);
  validateVmConfig(op, vmId, vmCfg);
  for (const s of specs) validateSpec(op, vmId, s);
  // A clone without specs gets every NIC of the VM it was cloned from.
  const src = vmCfg.cloneOf === undefined
    ? null
    : cloneSource(ctx, op, vmId, vmCfg.cloneOf);
  if (!specs.length) specs = src ? sourceSpecs(src) : [{}];
  const indices = specIndices(op, vmId, specs);
  const asked = specs.map((s, i) =>
    askedPolicy(op, `${vmId}/${indices[i]}`, s)
  );
  const guests = specs.map((s, i) =>
    resolveGuest(op, vmId, indices[i], s, src)
  );
  return await withVmLock(ctx, op, vmId, async (ctx) => {
    mayMakeNetnsCheck(ctx, op);
    let vm = await finishCrashedDelete(ctx, vmId);
    if (!vm) adoptable(ctx, op, vmId, false);
    await finishStaleNics(ctx, op, vmId);
    const existing = new Map(
      ctx.store.listNics({ vmId }).map((n) => [n.index, n]),
    );
    const kept: NicRecord[] = [];
    const plans: NicPlan[] = [];
    const policyFile = policyFileOf(ctx, op);
    for (const [i, spec] of specs.entries()) {
      const index = indices[i];
      const have = existing.get(index);
      const source = src?.nics.get(index);
      if (have) {
        checkSameNic(op, vmId, have, spec, vmCfg);
        checkSameGuest(op, `${vmId}/${index}`, have, guests[i]);
        checkSamePolicy(op, `${vmId}/${index}`, have, asked[i], policyFile);
        kept.push(have);
        continue;
      }
      const object = `${vmId}/${index}`;
      const list = await timePhase(
        ctx,
        "conflists",
        () =>
          ctx.networks.resolve(
            op,
            object,
            spec.network ?? vmCfg.network ?? vm?.network ?? source?.network,
          ),
      );
      const mac = spec.mac ? normalizeMac(op, object, spec.mac) : undefined;
      const request: NicRequest = {
        ...(mac ? { mac } : {}),
        ...(spec.ips?.length
          ? { ips: spec.ips.map((ip) => withPrefix(op, object, ip)) }
          : {}),
      };
      ipRequest(list, request, op, object); // refuses what IPAM cannot be asked
      plans.push({
        index,
        list,
        // A clone's virtio devices are its snapshot's: the source's counts.
        queues: spec.queues ?? vmCfg.cpu ?? source?.numQueues ?? 1,
        queueSize: vmCfg.queueSize ?? source?.queueSize ?? DEFAULT_QUEUE_SIZE,
        request,
        guest: guests[i],
        ...planNicPolicy(policyFile, list.name, asked[i]),
      });
    }
    await announceKept(ctx, op, kept);
    if (!plans.length) return sortByIndex(kept).map(toNicConfig);
    checkMacsFree(ctx, op, vmId, plans);
    if (plans.some((p) => p.guest)) checkCloneSupport(ctx, op, vmId);
    // A chain that speaks CNI 1.1 and says it is not ready: refused here.
    await timePhase(
      ctx,
      "cni:status",
      () => checkReady(ctx, op, vmId, plans.map((p) => p.list)),
    );
    // Fails closed on an unsafe hooks dir before anything changes.
    const readHooks = () => hooksOf(ctx);
    const hooks = ctx.trace
      ? ctx.trace.timeSync("hooks", readHooks)
      : readHooks();
    // A new one-NIC VM takes a warm slot when the pool has one that fits.
    const [first] = plans;
    if (
      !vm && ctx.pool && plans.length === 1 && first.index === 0 &&
      !first.request.mac && !first.request.ips && !first.guest &&
      !first.policyAsked
    ) {
      const claimed = await claimSlot(
        ctx,
        vmId,
        first.list,
        first.queues,
        first.queueSize,
        !hooks.has("afterAdd"),
      );
      if (claimed) return claimed;
    }
    // Every plugin (IPAM's too) found before any runs; a claim runs none.
    await timePhase(ctx, "cni:find", async () => {
      for (const p of plans) await ctx.cni.findPlugins(p.list);
    });
    for (const p of plans) {
      await runHook(ctx, "beforeAdd", {
        operation: op,
        vmId,
        index: p.index,
        ifName: `eth${p.index}`,
        tap: `tap${p.index}`,
        netnsPath: vm?.netnsPath ?? netnsPathOf(ctx, vmId),
        network: p.list.name,
        numQueues: p.queues,
        queueSize: p.queueSize,
        ...(p.request.mac ? { mac: p.request.mac } : {}),
        ...(p.guest ? { guest: toGuestIdentity(p.guest) } : {}),
      });
    }
    checkpoint(ctx, op, vmId);
    // Claimed only now: a refused add leaves no claim behind.
    mayMakeNetns(ctx, op);
    const vmCreated = !vm;
    if (!vm) {
      vm = newVmRecord(ctx, vmId, null);
      ctx.store.insertVm(vm);
      await ctx.fault("add:vm-recorded");
    }
    const made: NicRecord[] = [];
    const announced = new Set<NicRecord>();
    let netnsCreated = false;
    try {
      netnsCreated = ensureVmNetns(ctx, vm);
      await ctx.fault("add:netns-created");
      for (const p of plans) {
        checkpoint(ctx, op, vmId);
        made.push(
          await addNic(ctx, op, vm, { ...p, freshNetns: netnsCreated }),
        );
      }
      for (const rec of made) {
        await runHook(ctx, "afterAdd", {
          ...hookFields(rec),
          operation: op,
          cniResult: rec.cniResult,
        });
        announced.add(rec);
        markAnnounced(ctx, rec);
      }
    } catch (err) {
      throw await rollbackAdd(ctx, op, vm, err, {
        made,
        announced,
        vmCreated,
        netnsCreated,
      });
    }
    if (vm.network === null) ctx.store.setVmNetwork(vmId, plans[0].list.name);
    return sortByIndex([...kept, ...made]).map(toNicConfig);
  }, { index: indices.length === 1 ? indices[0] : null });
}

/**
 * Makes one NIC: record (`adding`), CNI ADD, result recorded, plumbing,
 * then `active` (`quiesced` in a quiesced VM). On failure this NIC is
 * retired again before the error leaves.
 */
export async function addNic(
  ctx: ProviderContext,
  op: HookOperation,
  vm: VmRecord,
  p: NicPlan,
): Promise<NicRecord> {
  const old = p.rebuild;
  const { store, kernel } = ctx;
  const ifName = `eth${p.index}`;
  const tap = `tap${p.index}`;
  const object = `${vm.vmId}/${p.index}`;
  const record: NicRecord = {
    id: old?.id ?? newNicId(),
    vmId: vm.vmId,
    index: p.index,
    ifName,
    tap,
    mac: p.request.mac ?? "",
    network: p.list.name,
    netnsPath: vm.netnsPath,
    numQueues: p.queues,
    queueSize: p.queueSize,
    mtu: 0,
    // Kept from the start: a crash before CNI ADD ends must not lose the
    // addresses a later recover asks for again.
    ips: (p.request.ips ?? []).map((s) => {
      const ip = parseIpArg(op, object, s);
      return { address: ip.address, prefix: ip.prefix!, version: ip.version };
    }),
    dns: {},
    cniResult: null,
    cniConfig: p.list.raw,
    containerId: old?.containerId ?? containerIdOf(ctx, vm.vmId),
    state: "adding",
    // A rebuild carries why it is `adding`: recover holds it (a crash here
    // leaves it for the next recover, not for an add to retire).
    error: old ? REBUILDING : null,
    announced: old?.announced ?? false,
    createdAt: old?.createdAt ?? new Date().toISOString(),
    ...((p.guest ?? old?.guest) ? { guest: p.guest ?? old?.guest } : {}),
    // A rebuild keeps what was recorded; a slot gets the network's defaults.
    policy: p.policy ? asRecord(p.policy) : old ? old.policy ?? null : asRecord(
      planNicPolicy(policyFileOf(ctx, op), p.list.name).policy,
    ),
    capabilityArgs: p.capabilityArgs
      ? asRecord(p.capabilityArgs)
      : old?.capabilityArgs ?? null,
  };
  if (old) store.updateNic(record);
  else store.insertNic(record);
  const kept = { ...record };
  await ctx.fault("add:record-inserted");
  let cniAdded = false;
  try {
    // A device of that name that no record accounts for is someone else's:
    // CNI ADD would fail on it, and its rollback DEL would remove it.
    const foreign = !p.freshNetns && kernel.inNetns(
      vm.netnsPath,
      (s) => getLinkByName(s.conn, ifName) !== null,
    );
    if (foreign) {
      throw new ConflictError(
        op,
        object,
        `${ifName} already exists in ${vm.netnsPath} and this install has ` +
          `no record of it; vmnic will not touch it`,
      );
    }
    cniAdded = true;
    const cniAdd = () =>
      ctx.cni.addNetworkList(p.list, {
        containerId: record.containerId,
        netns: vm.netnsPath,
        ifName,
        ...withCapabilityArgs(
          ipRequest(p.list, p.request, op, object),
          record.capabilityArgs,
        ),
        ...pluginRunOptions(ctx, vm.vmId),
      });
    // The dhcp daemon's first DISCOVER needs the new veth up (dhcp.ts).
    const result: CniResult = usesDhcpIpam(p.list)
      ? await whileDhcpAdd(ctx, vm.netnsPath, ifName, cniAdd)
      : await cniAdd();
    // Kept before plumbing flushes the veth: any teardown from here on has
    // the result and the IPs that CNI DEL needs.
    record.cniResult = result;
    record.ips = ipsOf(result, ifName, vm.netnsPath);
    record.dns = (result.dns ?? {}) as Record<string, unknown>;
    store.updateNic(record);
    await ctx.fault("add:cni-added");
    // A clone NIC: the routed path that translates its guest's identity.
    const path = record.guest
      ? clonePathSpec(record, { down: vm.quiesced, op })
      : null;
    const plumbed = kernel.inNetns(vm.netnsPath, (scope) => {
      if (path) {
        if (!old) return plumbClonePath(scope, path);
        repairClonePath(scope, path);
        const veth = getLinkByName(scope.conn, ifName)!;
        return { mac: veth.mac ?? "", mtu: veth.mtu };
      }
      if (!old) {
        return plumbNic(scope, {
          veth: ifName,
          tap,
          queues: p.queues,
          mac: p.request.mac,
          down: vm.quiesced && !keepsVethUp(record),
          policy: tapPolicyFor(record, vm.quiesced),
        });
      }
      // A rebuild keeps the TAP a hypervisor may hold: mended around it.
      repairNic(scope, {
        veth: ifName,
        tap,
        queues: p.queues,
        mac: p.request.mac ?? getLinkByName(scope.conn, ifName)?.mac ?? "",
        down: vm.quiesced && !keepsVethUp(record),
        policy: tapPolicyFor(record, vm.quiesced),
      });
      const veth = getLinkByName(scope.conn, ifName)!;
      return { mac: veth.mac ?? "", mtu: veth.mtu };
    });
    await ctx.fault("add:plumbed");
    record.mac = plumbed.mac;
    record.mtu = plumbed.mtu;
    record.state = vm.quiesced ? "quiesced" : "active";
    record.error = null;
    store.updateNic(record);
    await ctx.fault("add:active");
    return record;
  } catch (err) {
    const cniMayHaveRun = cniAdded && !(err instanceof CniPluginNotFoundError);
    if (old) {
      // Never lose what recover cannot rebuild: the NIC stays recorded,
      // `adding`, with the MAC and IPs to ask for again, and why.
      const released = await releaseNic(ctx, record, {
        unplumb: "redirects",
        cniAdded: cniMayHaveRun,
      });
      store.updateNic({
        ...kept,
        error: `its rebuild failed (${reasonOf(err)}): run recover again`,
      });
      if (released.error !== undefined) {
        throw new OperationError(
          op,
          object,
          `${
            reasonOf(err)
          }; undoing the attempt failed too (${released.error})`,
          err,
        );
      }
      throw err;
    }
    const out = await retireNic(ctx, record, {
      op,
      unplumb: true,
      announce: false,
      cniAdded: cniMayHaveRun,
    });
    if (!out.gone) {
      const incomplete = new RollbackIncompleteError(
        op,
        object,
        `NIC ${p.index}: undoing it failed (${out.error})`,
        err,
      );
      if (out.recordOnly) recordOnly.add(incomplete);
      throw incomplete;
    }
    throw err;
  }
}

/**
 * Rollbacks that left only a record behind (it could not be written, e.g.
 * on a full disk): the kernel and the plugins let go of the NIC, so its
 * netns need not stay for a DEL to be retried in it.
 */
const recordOnly = new WeakSet<Error>();

/** Undoes what a failed add made; the error to throw, saying what it did. */
async function rollbackAdd(
  ctx: ProviderContext,
  op: HookOperation,
  vm: VmRecord,
  err: unknown,
  s: {
    made: NicRecord[];
    announced: Set<NicRecord>;
    vmCreated: boolean;
    netnsCreated: boolean;
  },
): Promise<Error> {
  const stuck: string[] = [];
  const warnings: string[] = [];
  // A NIC whose CNI DEL is still to be retried keeps the netns; one of
  // which only the record is left (a full disk) does not.
  let netnsNeeded = false;
  if (err instanceof RollbackIncompleteError) {
    stuck.push(err.reason);
    if (!recordOnly.has(err)) netnsNeeded = true;
  }
  for (const rec of [...s.made].reverse()) {
    try {
      const out = await retireNic(ctx, rec, {
        op,
        unplumb: true,
        announce: s.announced.has(rec),
      });
      warnings.push(...out.warnings);
      if (!out.gone) {
        stuck.push(`NIC ${rec.index}: ${out.error}`);
        if (!out.recordOnly) netnsNeeded = true;
      }
    } catch (e) {
      stuck.push(`NIC ${rec.index}: ${messageOf(e)}`);
      netnsNeeded = true;
    }
  }
  let leftNics = 1;
  try {
    leftNics = ctx.store.listNics({ vmId: vm.vmId }).length;
  } catch (e) {
    stuck.push(`records: ${messageOf(e)}`);
  }
  if (!netnsNeeded) {
    try {
      if (s.netnsCreated) deleteVmNetns(ctx, vm.netnsPath);
    } catch (e) {
      stuck.push(`netns: ${messageOf(e)}`);
    }
  }
  if (!stuck.length && s.vmCreated && !leftNics) {
    try {
      ctx.store.deleteVm(vm.vmId);
    } catch (e) {
      stuck.push(`VM record: ${messageOf(e)}`);
    }
  }
  const first = err instanceof RollbackIncompleteError
    ? reasonOf(err.cause)
    : reasonOf(err);
  if (stuck.length) {
    return new RollbackIncompleteError(
      op,
      vm.vmId,
      `${first}; rollback incomplete: ${stuck.join("; ")}. What is left is ` +
        `recorded as failed: fix the cause and run \`vmnic delete ${vm.vmId}\`, ` +
        `or \`vmnic delete --force ${vm.vmId}\` to drop it` +
        (warnings.length ? `; ${warnings.join("; ")}` : ""),
      err instanceof RollbackIncompleteError ? err.cause : err,
    );
  }
  return rephrase(
    err,
    op,
    vm.vmId,
    `${first}; rolled back` +
      (warnings.length ? `; ${warnings.join("; ")}` : ""),
  );
}

/** An existing NIC must match what the retried add asks of it. */
function checkSameNic(
  op: string,
  vmId: string,
  have: NicRecord,
  spec: AddSpec,
  vmCfg: VmConfig,
): void {
  const object = `${vmId}/${have.index}`;
  const clash = (what: string, want: unknown, got: unknown) => {
    throw new ConflictError(
      op,
      object,
      `NIC ${have.index} exists with ${what} ${JSON.stringify(got)}, not ` +
        `${JSON.stringify(want)}: remove it first to add it anew`,
    );
  };
  if (have.state === "failed") {
    throw new ConflictError(
      op,
      object,
      `NIC ${have.index} is failed (${have.error}): fix the cause and run ` +
        `\`vmnic remove ${vmId} ${have.index}\` (with --force to drop it ` +
        `regardless), then add it again`,
    );
  }
  if (heldByRecover(have)) {
    throw new ConflictError(
      op,
      object,
      `NIC ${have.index} waits for a rebuild (${have.error}): run ` +
        `\`vmnic recover ${vmId}\`, which keeps its MAC and IPs`,
    );
  }
  const network = spec.network ?? vmCfg.network;
  if (network !== undefined && network !== have.network) {
    clash("network", network, have.network);
  }
  const queues = spec.queues ?? vmCfg.cpu;
  if (queues !== undefined && queues !== have.numQueues) {
    clash("queues", queues, have.numQueues);
  }
  if (vmCfg.queueSize !== undefined && vmCfg.queueSize !== have.queueSize) {
    clash("queue size", vmCfg.queueSize, have.queueSize);
  }
  if (spec.mac !== undefined && spec.mac.toLowerCase() !== have.mac) {
    clash("MAC", spec.mac.toLowerCase(), have.mac);
  }
  if (spec.ips?.length) {
    const want = spec.ips.map((ip) => parseIpArg(op, object, ip).address)
      .sort();
    const got = have.ips.map((ip) => ip.address).sort();
    if (want.join() !== got.join()) clash("IPs", want, got);
  }
}

/** An explicit MAC must not be any other NIC's of this install. */
function checkMacsFree(
  ctx: ProviderContext,
  op: string,
  vmId: string,
  plans: NicPlan[],
): void {
  const seen = new Set<string>();
  for (const p of plans) {
    const mac = p.request.mac;
    if (!mac) continue;
    const object = `${vmId}/${p.index}`;
    if (seen.has(mac)) {
      throw new InvalidInputError(op, object, `MAC ${mac} given twice`);
    }
    seen.add(mac);
    const other = ctx.store.nicsWithMac(mac)[0];
    if (other) {
      throw new ConflictError(
        op,
        object,
        `MAC ${mac} is NIC ${other.index} of VM ${other.vmId} already: two ` +
          `NICs with one MAC on a network break both`,
      );
    }
  }
}

/**
 * Clone NICs need nftables in the VM's netns (libnftables through FFI):
 * refused before anything changes where the kernel cannot.
 */
function checkCloneSupport(
  ctx: ProviderContext,
  op: string,
  vmId: string,
): void {
  const why = ctx.kernel.inHost((s) =>
    s.stack ? s.stack.unavailable() : "this kernel has no nftables seam"
  );
  if (why !== null) {
    throw new OperationError(
      op,
      vmId,
      `clone NICs translate with nftables, which is not usable here: ${why}`,
    );
  }
}

function withPrefix(op: string, object: string, ip: string): string {
  const p = parseIpArg(op, object, ip);
  return `${p.address}/${p.prefix ?? (p.version === 4 ? 32 : 128)}`;
}

function sortByIndex(recs: NicRecord[]): NicRecord[] {
  return recs.sort((a, b) => a.index - b.index);
}

// ------------------------------------------------------------ stale NICs

/**
 * The VM's record, after finishing a delete of it that a crash cut short
 * (then null: the VM is gone). A delete is never revived.
 */
export async function finishCrashedDelete(
  ctx: ProviderContext,
  vmId: string,
): Promise<VmRecord | null> {
  const vm = ctx.store.getVm(vmId);
  if (!vm?.deleting) return vm;
  await deleteVm(ctx, "delete", vmId);
  return null;
}

/**
 * Finishes the NICs a crashed run left `adding` or `deleting`: retired, as
 * the interrupted operation would have ended. One that cannot be finished
 * becomes `failed` and the operation stops, saying how to get out.
 */
export async function finishStaleNics(
  ctx: ProviderContext,
  op: HookOperation,
  vmId: string,
): Promise<void> {
  const stuck: string[] = [];
  for (const rec of ctx.store.listNics({ vmId })) {
    if (rec.state !== "adding" && rec.state !== "deleting") continue;
    // An `adding` NIC recover holds for a rebuild is recover's to finish.
    if (heldByRecover(rec)) continue;
    const out = await retireNic(ctx, rec, {
      op,
      unplumb: true,
      announce: rec.announced === true,
    });
    if (!out.gone) {
      stuck.push(
        `NIC ${rec.index} was left ${rec.state} by an interrupted run and ` +
          `could not be finished: ${out.error}`,
      );
    }
  }
  if (stuck.length) {
    throw new OperationError(
      op,
      vmId,
      `${stuck.join("; ")}. It is recorded as failed: fix the cause and ` +
        `retry, or \`vmnic delete --force ${vmId}\``,
    );
  }
}

// ------------------------------------------------------------------ remove

/**
 * Tears down the NICs at `indices`, keeping the netns. Indices without a
 * NIC are reported as absent. A NIC whose CNI DEL fails stays recorded as
 * `failed` (and the call fails) unless `force` drops it.
 */
export async function remove(
  ctx: ProviderContext,
  vmId: string,
  indices: number[],
  opts: TeardownOptions = {},
): Promise<RemoveResult> {
  const op = "remove";
  validateVmId(op, vmId);
  if (!indices.length) {
    throw new InvalidInputError(op, vmId, "no NIC index given");
  }
  for (const i of indices) validateIndex(op, vmId, i);
  return await withVmLock(ctx, op, vmId, async (ctx) => {
    const vm = await finishCrashedDelete(ctx, vmId);
    const all = ctx.store.listNics({ vmId });
    if (!vm && !all.length) {
      throw new NotFoundError(op, vmId, `no VM ${vmId} in the records`);
    }
    const wanted = [...new Set(indices)];
    const found = all.filter((r) => wanted.includes(r.index));
    const absent = wanted.filter((i) => !found.some((r) => r.index === i));
    const result: RemoveResult = { vmId, removed: [], absent, warnings: [] };
    result.warnings.push(...await askBeforeRemove(ctx, op, found, opts));
    const stuck: string[] = [];
    for (const rec of found) {
      const out = await retireNic(ctx, rec, {
        op,
        unplumb: true,
        announce: isAnnounced(rec),
        force: opts.force,
      });
      result.warnings.push(...out.warnings);
      if (out.gone) result.removed.push(rec.index);
      else stuck.push(`NIC ${rec.index}: ${out.error}`);
    }
    if (stuck.length) {
      throw new OperationError(
        op,
        vmId,
        `${stuck.join("; ")}. Kept as failed: fix the cause and run remove ` +
          `again, or add --force to drop it`,
      );
    }
    return result;
  }, { index: indices.length === 1 ? indices[0] : null });
}

/**
 * An `adding` NIC that `recover` holds for a rebuild (it carries why), not
 * one a crashed add left (which the next operation retires).
 */
export function heldByRecover(rec: NicRecord): boolean {
  return rec.state === "adding" && rec.error !== null;
}

/** Records that a NIC's `afterAdd` hooks ran. */
export function markAnnounced(ctx: ProviderContext, rec: NicRecord): void {
  rec.announced = true;
  ctx.store.updateNic(rec);
}

/**
 * NICs a crash left plumbed but unannounced (their add was cut short after
 * the NIC became active, before its afterAdd hooks ran): the retried add
 * that returns them tells the hooks now.
 */
async function announceKept(
  ctx: ProviderContext,
  op: HookOperation,
  kept: NicRecord[],
): Promise<void> {
  for (const rec of kept) {
    if (rec.announced || (rec.state !== "active" && rec.state !== "quiesced")) {
      continue;
    }
    await runHook(ctx, "afterAdd", {
      ...hookFields(rec),
      operation: op,
      cniResult: rec.cniResult,
    });
    markAnnounced(ctx, rec);
  }
}

/** The NIC's `afterAdd` hooks ran: its removal is announced too. */
function isAnnounced(rec: NicRecord): boolean {
  return rec.announced === true;
}

/** Plumbed and in use: `active` or `quiesced`. */
function isLive(rec: NicRecord): boolean {
  return rec.state === "active" || rec.state === "quiesced";
}

// ------------------------------------------------------------------ delete

/**
 * Deletes every NIC of each VM, then its netns, then its records and lock.
 * Best effort per VM: returns the ids fully cleaned and why the others were
 * not. A VM this install has no trace of counts as cleaned.
 */
export async function deleteVms(
  ctx: ProviderContext,
  vmIds: string[],
  opts: TeardownOptions & {
    onProgress?: (vmId: string, done: number, total: number) => void;
  } = {},
): Promise<DeleteResult> {
  const op = "delete";
  for (const id of vmIds) validateVmId(op, id);
  const result: DeleteResult = { deleted: [], errors: [], warnings: [] };
  let done = 0;
  for (const vmId of new Set(vmIds)) {
    if (ctx.signal?.aborted) {
      result.errors.push({
        vmId,
        error: `not attempted: interrupted by ${String(ctx.signal.reason)}`,
      });
      continue;
    }
    // One event per VM; its failure is reported in the result, not thrown.
    await tracedOp(ctx, op, vmId, async (ctx) => {
      let lock: VmLock | undefined;
      try {
        lock = await timePhase(
          ctx,
          "lock",
          () => lockVm(ctx, op, vmId, ctx.config.lockWaitMs),
        );
        const warnings = await deleteVm(ctx, op, vmId, opts);
        result.warnings.push(
          ...warnings.map((warning) => ({ vmId, warning })),
        );
        lock.releaseAndRemove();
        result.deleted.push(vmId);
      } catch (e) {
        const err = toVmnicError(op, vmId, e);
        result.errors.push({ vmId, error: reasonOf(err) });
        throw err;
      } finally {
        // A VM this install has no record of (e.g. a netns it left alone)
        // keeps no lock file behind.
        if (lock && !hasRecords(ctx, vmId)) {
          try {
            lock.releaseAndRemove();
          } catch { /* tidiness only */ }
        }
        lock?.release();
      }
    }).catch(() => {});
    opts.onProgress?.(vmId, ++done, vmIds.length);
  }
  return result;
}

/** Whether this install has a record of the VM (the VM's or a NIC's). */
export function hasRecords(ctx: ProviderContext, vmId: string): boolean {
  return ctx.store.getVm(vmId) !== null ||
    ctx.store.listNics({ vmId }).length > 0;
}

/**
 * Runs `beforeRemove` for the NICs that were announced and are live (a NIC
 * a crash left half-added or half-removed has no say). A veto or a broken
 * hook stops the teardown, unless `force`: then it is a warning, so a hook
 * can never keep a VM from being torn down.
 */
async function askBeforeRemove(
  ctx: ProviderContext,
  op: HookOperation,
  recs: NicRecord[],
  opts: TeardownOptions,
): Promise<string[]> {
  const warnings: string[] = [];
  for (const rec of recs) {
    if (!isAnnounced(rec) || !isLive(rec)) continue;
    try {
      await runHook(ctx, "beforeRemove", { ...hookFields(rec), operation: op });
    } catch (e) {
      if (!opts.force) throw e;
      warnings.push(
        `NIC ${rec.index}: beforeRemove overridden by --force: ${messageOf(e)}`,
      );
    }
  }
  return warnings;
}

/**
 * Tears a whole VM down; the caller holds its lock. Throws unless the VM
 * is fully gone; returns warnings (failed `afterRemove` hooks, what `force`
 * dropped), which do not undo the removal.
 */
export async function deleteVm(
  ctx: ProviderContext,
  op: HookOperation,
  vmId: string,
  opts: TeardownOptions = {},
): Promise<string[]> {
  const vm = ctx.store.getVm(vmId);
  const recs = ctx.store.listNics({ vmId });
  if (!vm && !recs.length) {
    if (ctx.kernel.netnsExists(netnsNameOf(ctx, vmId), ctx.config.netnsDir)) {
      throw new ConflictError(
        op,
        vmId,
        `netns ${netnsPathOf(ctx, vmId)} exists but this install has no ` +
          `record of VM ${vmId}: left alone (\`vmnic gc --include-unknown\` ` +
          `removes netns with the prefix that no record accounts for)`,
      );
    }
    // A backup a crash left before the VM's first COMMIT (the caller holds
    // the lock, so no transaction of it is open): nothing else is left.
    try {
      ctx.store.dropOrphanBackup(vmId);
    } catch { /* tidiness only: gc removes it too */ }
    return [];
  }
  // Veto point: nothing torn down yet.
  const warnings = await askBeforeRemove(ctx, op, recs, opts);
  if (vm) ctx.store.markVmDeleting(vmId);
  else {
    ctx.store.setNicState(vmId, "deleting", {
      indices: recs.filter((r) => r.state !== "failed").map((r) => r.index),
    });
  }
  await ctx.fault("delete:marked");
  const stuck: string[] = [];
  for (const rec of recs) {
    const out = await retireNic(
      ctx,
      { ...rec, state: rec.state === "failed" ? "failed" : "deleting" },
      { op, unplumb: false, announce: isAnnounced(rec), force: opts.force },
    );
    warnings.push(...out.warnings);
    if (!out.gone) stuck.push(`NIC ${rec.index}: ${out.error}`);
    await ctx.fault("delete:nic-retired");
  }
  // The netns stays while a NIC's CNI DEL still has to be retried in it.
  if (stuck.length) {
    throw new OperationError(
      op,
      vmId,
      `${stuck.join("; ")}. The VM is kept with those NICs recorded as ` +
        `failed: fix the cause and run delete again, or \`vmnic delete ` +
        `--force ${vmId}\` to finish without the plugins`,
    );
  }
  const paths = new Set([
    vm?.netnsPath ?? netnsPathOf(ctx, vmId),
    ...recs.map((r) => r.netnsPath),
  ]);
  for (const path of paths) deleteVmNetns(ctx, path);
  await ctx.fault("delete:netns-deleted");
  if (vm) ctx.store.deleteVm(vmId);
  return warnings;
}
