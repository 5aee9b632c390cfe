/**
 * The warm pool (docs/pool.md): per network and queue count, NIC slots made
 * ahead of time (netns, CNI ADD, TAP, redirects, records), so that a VM's
 * `add` only has to take one: the slot's netns gets the VM's name, its
 * records move to the VM in one transaction, hooks run as for any add, and
 * the pool fills again in the background.
 *
 * A slot is a VM record whose id starts with `_slot-` (no VM id can) and
 * whose `slot` names its pool. Every step of a fill or a claim can be
 * finished or undone after a crash ({@linkcode Pool.start}).
 *
 * @module
 */
import type { NetworkConfigList } from "../cni/config.ts";
import type { NicRecord, VmRecord } from "../store/types.ts";
import { randomHex } from "../store/types.ts";
import type { VmLock } from "../store/locks.ts";
import {
  lockVm,
  mayMakeNetns,
  netnsNameOf,
  netnsPathOf,
  type ProviderContext,
  runHook,
} from "./context.ts";
import { tracedOp } from "./oplog.ts";
import { InvalidInputError, messageOf, reasonOf, rephrase } from "./errors.ts";
import {
  addNic,
  DEFAULT_QUEUE_SIZE,
  deleteVm,
  ensureVmNetns,
  finishStaleNics,
  markAnnounced,
} from "./lifecycle.ts";
import { hookFields, toNicConfig } from "./records.ts";
import { retireNic } from "./retire.ts";
import type { NicConfig } from "./types.ts";
import { validateNetworkName } from "./validate.ts";

/** Where a slot's id starts: no VM id can (they start with a letter or digit). */
export const SLOT_PREFIX = "_slot-";

/** One pool: `count` slots of `network` with `queues` queue pairs. */
export interface PoolSpec {
  /** The network (conflist name). */
  network: string;
  /** Slots kept ready. */
  count: number;
  /** TAP queue pairs of each slot (a VM's vCPUs). */
  queues: number;
}

/**
 * How long after a claim its refill starts. A fill's first steps are
 * synchronous kernel calls; run at once, they would hold up the claim's
 * answer on its way out of the daemon's (single-threaded) event loop.
 */
const REFILL_DELAY_MS = 20;

/** Largest pool, per network. */
export const MAX_POOL_SLOTS = 1000;

/** `NETWORK=COUNT[:QUEUES]`, as `--pool` takes it. */
export function parsePoolSpec(text: string): PoolSpec {
  const m = /^([^=]+)=(\d+)(?::(\d+))?$/.exec(text);
  const bad = (why: string) =>
    new InvalidInputError(
      "serve",
      text,
      `--pool ${JSON.stringify(text)}: ${why}; expected NETWORK=COUNT[:QUEUES]`,
    );
  if (!m) throw bad("not NETWORK=COUNT[:QUEUES]");
  validateNetworkName("serve", text, m[1]);
  const count = Number(m[2]);
  const queues = m[3] === undefined ? 1 : Number(m[3]);
  if (count < 1 || count > MAX_POOL_SLOTS) {
    throw bad(`COUNT must be 1–${MAX_POOL_SLOTS}`);
  }
  if (queues < 1 || queues > 256) throw bad("QUEUES must be 1–256");
  return { network: m[1], count, queues };
}

/** Whether a VM record is a pool slot's. */
export function isSlot(vm: VmRecord): boolean {
  return typeof vm.slot === "string";
}

/** A pool's key: `network/queues`. */
function keyOf(network: string, queues: number): string {
  return `${network}/${queues}`;
}

/** The warm pool's state (`GET /v1/pool`). */
export interface PoolStatus {
  /** One entry per pool. */
  pools: {
    /** The network. */
    network: string;
    /** Queue pairs of its slots. */
    queues: number;
    /** Slots it keeps ready. */
    target: number;
    /** Slots ready now. */
    ready: number;
    /** Slots being made. */
    filling: number;
    /** Slots claimed since the start. */
    claimed: number;
    /** Slots made since the start. */
    refills: number;
    /** Fills that failed since the start. */
    failures: number;
    /** The last fill failure, if any. */
    lastError?: string;
    /** The ready slots and the IPs they hold (IPAM leases). */
    slots: { id: string; netnsPath: string; ips: string[] }[];
  }[];
}

interface PoolState {
  spec: PoolSpec;
  ready: string[];
  filling: number;
  claimed: number;
  refills: number;
  failures: number;
  lastError?: string;
}

/** How long a pool that keeps failing to fill waits before it tries again. */
const FILL_BACKOFF_MS = 5_000;

/** The warm pool of one provider. */
export class Pool {
  readonly #ctx: ProviderContext;
  readonly #pools = new Map<string, PoolState>();
  #work: Promise<void> = Promise.resolve();
  #stopped = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #soon: ReturnType<typeof setTimeout> | undefined;

  /** A pool per spec; nothing is made until {@linkcode start}. */
  constructor(ctx: ProviderContext, specs: readonly PoolSpec[]) {
    this.#ctx = ctx;
    for (const spec of specs) {
      const key = keyOf(spec.network, spec.queues);
      if (this.#pools.has(key)) {
        throw new InvalidInputError(
          "serve",
          key,
          `--pool names network ${spec.network} with ${spec.queues} queue(s) twice`,
        );
      }
      this.#pools.set(key, {
        spec,
        ready: [],
        filling: 0,
        claimed: 0,
        refills: 0,
        failures: 0,
      });
    }
  }

  /**
   * Finishes what a crash left (a claim is undone: the slot goes back;
   * a half-made slot is retired), retires slots no pool wants any more,
   * takes the healthy ones as ready, and begins filling.
   */
  async start(): Promise<void> {
    await recoverSlots(this.#ctx, (slot, ok) => {
      const pool = this.#pools.get(slot.slot!);
      if (ok && pool) {
        pool.ready.push(slot.vmId);
        return true;
      }
      return false;
    });
    this.refill();
  }

  /** Starts filling every pool up to its target, in the background. */
  refill(): void {
    if (this.#stopped) return;
    this.#work = this.#work.then(() => this.#fillAll()).catch(() => {});
  }

  /**
   * Starts filling once the current task is done: the claim that took a
   * slot answers its caller before the refill's first (synchronous) kernel
   * calls run.
   */
  refillSoon(): void {
    if (this.#stopped || this.#soon !== undefined) return;
    this.#soon = setTimeout(() => {
      this.#soon = undefined;
      this.refill();
    }, REFILL_DELAY_MS);
  }

  /** Resolves once no fill is running (and stops further ones). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#soon);
    await this.#work;
  }

  /** A ready slot of `network` with `queues`, taken out of the pool; or null. */
  take(network: string, queues: number): string | null {
    return this.#pools.get(keyOf(network, queues))?.ready.shift() ?? null;
  }

  /** A slot taken but not used (a veto): ready again. */
  giveBack(network: string, queues: number, slotId: string): void {
    this.#pools.get(keyOf(network, queues))?.ready.unshift(slotId);
  }

  /** Counts a claim. */
  claimed(network: string, queues: number): void {
    const p = this.#pools.get(keyOf(network, queues));
    if (p) p.claimed++;
  }

  /** The pools and their slots. */
  status(): PoolStatus {
    return {
      pools: [...this.#pools.values()].map((p) => ({
        network: p.spec.network,
        queues: p.spec.queues,
        target: p.spec.count,
        ready: p.ready.length,
        filling: p.filling,
        claimed: p.claimed,
        refills: p.refills,
        failures: p.failures,
        ...(p.lastError ? { lastError: p.lastError } : {}),
        slots: p.ready.map((id) => ({
          id,
          netnsPath: netnsPathOf(this.#ctx, id),
          ips: this.#ctx.store.listNics({ vmId: id }).flatMap((n) =>
            n.ips.map((ip) => ip.address)
          ),
        })),
      })),
    };
  }

  async #fillAll(): Promise<void> {
    for (const pool of this.#pools.values()) {
      while (
        !this.#stopped && pool.ready.length + pool.filling < pool.spec.count
      ) {
        pool.filling++;
        try {
          const id = await fillSlot(this.#ctx, pool.spec);
          pool.ready.push(id);
          pool.refills++;
        } catch (e) {
          pool.failures++;
          pool.lastError = reasonOf(e);
          // A network that cannot be filled now is tried again later.
          this.#timer = setTimeout(() => this.refill(), FILL_BACKOFF_MS);
          break;
        } finally {
          pool.filling--;
        }
      }
    }
  }
}

/**
 * Makes one slot: its record, its netns, its NIC (CNI ADD, TAP,
 * redirects). No hooks: they run when a VM claims it. On failure nothing
 * of it is left.
 */
export async function fillSlot(
  ctx: ProviderContext,
  spec: PoolSpec,
): Promise<string> {
  const slotId = SLOT_PREFIX + randomHex(4);
  return await tracedOp(
    ctx,
    "pool-fill",
    slotId,
    (c) => fillOne(c, spec, slotId),
    { index: 0 },
  );
}

async function fillOne(
  ctx: ProviderContext,
  spec: PoolSpec,
  slotId: string,
): Promise<string> {
  const op = "add";
  const list = await ctx.networks.resolve("pool", spec.network, spec.network);
  const lock = await lockVm(ctx, op, slotId, 0);
  try {
    const vm: VmRecord = {
      vmId: slotId,
      netnsPath: netnsPathOf(ctx, slotId),
      network: list.name,
      quiesced: false,
      deleting: false,
      slot: keyOf(spec.network, spec.queues),
      claimVm: null,
      createdAt: new Date().toISOString(),
    };
    // A slot's netns is made under the prefix like any VM's: claimed first.
    mayMakeNetns(ctx, op);
    ctx.store.insertVm(vm);
    await ctx.fault("pool:slot-recorded");
    try {
      const fresh = ensureVmNetns(ctx, vm);
      await addNic(ctx, op, vm, {
        index: 0,
        list,
        queues: spec.queues,
        queueSize: DEFAULT_QUEUE_SIZE,
        request: {},
        freshNetns: fresh,
      });
    } catch (e) {
      // addNic retired its NIC; the rest goes with the slot.
      await deleteVm(ctx, op, slotId, { force: true }).catch(() => {});
      throw e;
    }
    // The lock file stays with the slot: its claim takes the lock without
    // making a file (gc and recovery remove it with the slot).
    lock.release();
    return slotId;
  } catch (e) {
    lock.releaseAndRemove();
    throw e;
  }
}

/**
 * Gives the VM NIC 0 from a ready slot of `list` with `queues`: the slot's
 * netns takes the VM's name, its records move to the VM. Null when no slot
 * is ready (the caller makes the NIC the normal way). The caller holds the
 * VM's lock; the VM has no record and no netns yet. `noAfterAddHooks`: none
 * was found, so the NIC is recorded as announced as it moves (one write
 * less on the claim path).
 */
export async function claimSlot(
  ctx: ProviderContext,
  vmId: string,
  list: NetworkConfigList,
  queues: number,
  queueSize: number,
  noAfterAddHooks = false,
): Promise<NicConfig[] | null> {
  const pool = ctx.pool;
  if (!pool) return null;
  const op = "add";
  let slotId: string | null;
  let lock: VmLock | null = null;
  let slot: VmRecord | null;
  let nic: NicRecord | undefined;
  // A slot another process works on (gc) goes back to the pool once this
  // claim has another; one it finished or retired meanwhile is dropped.
  const busy: string[] = [];
  try {
    for (;;) {
      slotId = pool.take(list.name, queues);
      if (slotId === null) return null;
      lock = await lockVm(ctx, op, slotId, 0).catch(() => null);
      if (!lock) {
        busy.push(slotId);
        continue;
      }
      slot = ctx.store.getVm(slotId);
      [nic] = ctx.store.listNics({ vmId: slotId });
      if (slot && !slot.claimVm && nic?.state === "active") break;
      // No record left: the lock file was made just now, for nothing.
      if (slot) lock.release();
      else lock.releaseAndRemove();
    }
  } finally {
    for (const id of busy.reverse()) pool.giveBack(list.name, queues, id);
  }
  const path = netnsPathOf(ctx, vmId);
  let moved: NicRecord[] | undefined;
  try {
    const future = { ...hookFields(nic), vmId, netnsPath: path, queueSize };
    try {
      await runHook(ctx, "beforeAdd", { ...future, operation: op });
      // Claimed only now, as by any add: a refused add leaves no claim.
      mayMakeNetns(ctx, op); // the VM's netns name is made under the prefix
    } catch (e) {
      pool.giveBack(list.name, queues, slotId);
      throw e;
    }
    ctx.store.setSlotClaim(slotId, vmId);
    await ctx.fault("pool:claim-recorded");
    ctx.kernel.renameNetns(
      netnsNameOf(ctx, slotId),
      netnsNameOf(ctx, vmId),
      ctx.config.netnsDir,
    );
    await ctx.fault("pool:netns-renamed");
    const vm: VmRecord = {
      vmId,
      netnsPath: path,
      network: slot.network,
      quiesced: false,
      deleting: false,
      slot: null,
      claimVm: null,
      createdAt: new Date().toISOString(),
    };
    moved = ctx.store.moveSlot(slotId, vm, (n) => ({
      ...n,
      vmId,
      netnsPath: path,
      queueSize,
      cniResult: resultInNetns(n.cniResult, slot.netnsPath, path),
      announced: noAfterAddHooks,
    }));
    await ctx.fault("pool:claimed");
    pool.claimed(list.name, queues);
    try {
      for (const rec of moved) {
        await runHook(ctx, "afterAdd", {
          ...hookFields(rec),
          operation: op,
          cniResult: rec.cniResult,
        });
        if (!rec.announced) markAnnounced(ctx, rec);
      }
    } catch (err) {
      throw await undoClaim(ctx, vmId, moved, err);
    }
    return moved.map(toNicConfig);
  } finally {
    // A slot still recorded (a veto gave it back) keeps its lock file.
    if (moved) lock!.releaseAndRemove();
    else lock!.release();
    pool.refillSoon();
  }
}

/** An afterAdd veto of a claimed slot: the NIC and the VM go, as for any add. */
async function undoClaim(
  ctx: ProviderContext,
  vmId: string,
  moved: NicRecord[],
  err: unknown,
): Promise<Error> {
  const stuck: string[] = [];
  for (const rec of moved) {
    const out = await retireNic(ctx, rec, {
      op: "add",
      unplumb: true,
      announce: false,
    });
    if (!out.gone) stuck.push(`NIC ${rec.index}: ${out.error}`);
  }
  if (!stuck.length) {
    try {
      await deleteVm(ctx, "add", vmId);
    } catch (e) {
      stuck.push(messageOf(e));
    }
  }
  return rephrase(
    err,
    "add",
    vmId,
    `${reasonOf(err)}; ${
      stuck.length ? `rollback incomplete: ${stuck.join("; ")}` : "rolled back"
    }`,
  );
}

/** The CNI result with the container interface's sandbox at the new path. */
function resultInNetns(result: unknown, from: string, to: string): unknown {
  const r = result as { interfaces?: { sandbox?: string }[] } | null;
  if (!r?.interfaces) return result;
  return {
    ...r,
    interfaces: r.interfaces.map((i) =>
      i.sandbox === from ? { ...i, sandbox: to } : i
    ),
  };
}

/**
 * Brings every slot record back to a known state after a crash: a claim
 * cut short is undone (the slot's netns gets its own name back, the slot
 * is ready again); a slot whose NIC is not active, or whose netns is gone,
 * or that `keep` does not want, is retired. `keep(slot, healthy)` says
 * whether a slot stays. Returns the slots retired.
 */
export async function recoverSlots(
  ctx: ProviderContext,
  keep: (slot: VmRecord, healthy: boolean) => boolean,
): Promise<string[]> {
  const retired: string[] = [];
  const dir = ctx.config.netnsDir;
  for (const slot of ctx.store.listVms().filter(isSlot)) {
    const lock = await lockVm(ctx, "gc", slot.vmId, 0).catch(() => null);
    if (!lock) continue; // another process is on it
    try {
      const own = netnsNameOf(ctx, slot.vmId);
      if (slot.claimVm) {
        const taken = netnsNameOf(ctx, slot.claimVm);
        const claimedRecord = ctx.store.getVm(slot.claimVm);
        if (!claimedRecord && ctx.kernel.netnsExists(taken, dir)) {
          if (ctx.kernel.netnsExists(own, dir)) {
            ctx.kernel.deleteNetns(taken, dir);
          } else ctx.kernel.renameNetns(taken, own, dir);
        }
        ctx.store.setSlotClaim(slot.vmId, null);
      }
      await finishStaleNics(ctx, "gc", slot.vmId).catch(() => {});
      const nics = ctx.store.listNics({ vmId: slot.vmId });
      const healthy = ctx.kernel.netnsExists(own, dir) && nics.length === 1 &&
        nics[0].state === "active";
      if (!keep(slot, healthy)) {
        await deleteVm(ctx, "gc", slot.vmId, { force: true });
        lock.releaseAndRemove();
        retired.push(slot.vmId);
      }
    } catch {
      // Left for the next start or gc; a slot never blocks the rest.
    } finally {
      lock.release();
    }
  }
  return retired;
}
