/**
 * What a hook is and what it receives.
 *
 * @module
 */

/** The moments hooks run at, around every NIC add and remove. */
export type HookEvent =
  | "beforeAdd"
  | "afterAdd"
  | "beforeRemove"
  | "afterRemove";

/** Every hook event, in life-cycle order. */
export const HOOK_EVENTS: readonly HookEvent[] = [
  "beforeAdd",
  "afterAdd",
  "beforeRemove",
  "afterRemove",
];

/** The provider operation a hook runs within. */
export type HookOperation = "add" | "remove" | "delete" | "gc" | "recover";

/** One IP of the NIC, as in the NIC config JSON. */
export interface HookIp {
  /** The address without prefix. */
  address: string;
  /** The prefix length. */
  prefix: number;
  /** The gateway, if any. */
  gateway?: string;
  /** IP version. */
  version: 4 | 6;
}

/**
 * What a hook gets: the NIC config (same field names as the NIC JSON) plus
 * the event and the operation. Before an add, the fields not known yet
 * (tap, mac, ips, …) are absent; `cniResult` is present after an add.
 */
export interface HookContext {
  /** The event being run. */
  event: HookEvent;
  /** The operation the event belongs to. */
  operation: HookOperation;
  /** The VM. */
  vmId: string;
  /** The NIC index within the VM. */
  index: number;
  /** Interface name inside the VM's netns. */
  ifName?: string;
  /** TAP device name. */
  tap?: string;
  /** The guest's MAC. */
  mac?: string;
  /** The NIC's IPs. */
  ips?: HookIp[];
  /** The VM's netns path. */
  netnsPath?: string;
  /** The CNI network. */
  network?: string;
  /** TAP queue pairs. */
  numQueues?: number;
  /** virtio-net queue size. */
  queueSize?: number;
  /** MTU. */
  mtu?: number;
  /**
   * A clone NIC's guest identity (its snapshot's MAC, IPs, routes, and the
   * VM it was cloned from): what the guest has, while `mac` and `ips` are
   * what the network sees.
   */
  guest?: {
    /** The guest's MAC. */
    mac: string;
    /** The guest's IPs. */
    ips: HookIp[];
    /** The guest's routes. */
    routes: { dst: string; gw?: string }[];
    /** The VM it was cloned from. */
    cloneOf?: string;
  };
  /** The CNI result (after an add). */
  cniResult?: unknown;
  /**
   * The W3C trace context of the operation (its span as parent); exec
   * hooks get it in `TRACEPARENT` too.
   */
  traceparent?: string;
}

/** A context without its event: {@linkcode HookRunner.run} adds the event. */
export type HookInput = Omit<HookContext, "event">;

/**
 * A TypeScript hook: a module in the repo's `hooks/` default-exports one,
 * and `hooks/registry.ts` lists it.
 */
export interface TsHook {
  /** The events it runs at; all of them when absent. */
  events?: readonly HookEvent[];
  /** Its timeout; the runner's default when absent. */
  timeoutMs?: number;
  /**
   * Whether it has anything to do now (its settings are there), asked once
   * per operation; always when absent. An idle hook is listed but not run,
   * and costs the operation nothing: an `afterAdd` hook, even one that
   * would return at once, makes an add record that its hooks ran.
   */
  active?(): boolean;
  /**
   * Runs the hook. Throwing (or rejecting) fails the hook. `signal` aborts
   * when the hook timed out and was abandoned.
   */
  run(ctx: Readonly<HookContext>, signal: AbortSignal): void | Promise<void>;
}

/** Types a TS hook's default export. */
export function defineHook(hook: TsHook): TsHook {
  return hook;
}

/** A hook in effect, as {@linkcode HookRunner.list} reports it. */
export interface HookInfo {
  /** File name (the sort key). */
  name: string;
  /** A TS module of the registry or an executable of the hooks dir. */
  kind: "ts" | "exec";
  /** The executable's path (exec hooks). */
  path?: string;
  /** The events it runs at. */
  events: HookEvent[];
  /** Its timeout. */
  timeoutMs: number;
  /** A TS hook that says it has nothing to do now (`active()`): not run. */
  idle?: true;
}

/** What running one hook gave. */
export interface HookRunReport {
  /** The hook's name. */
  name: string;
  /** Its kind. */
  kind: "ts" | "exec";
  /** The event run. */
  event: HookEvent;
  /** Wall time taken. */
  durationMs: number;
  /** Its standard output (exec hooks; capped). */
  stdout?: string;
  /** Its standard error (exec hooks; capped). */
  stderr?: string;
}
