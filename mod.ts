/**
 * vmnic: CNI networking for microVMs (Cloud Hypervisor, Firecracker, QEMU).
 *
 * Per VM a named network namespace, the CNI plugin chain of a conflist run
 * inside it, a TAP device wired to the CNI veth by TC redirects, records in
 * SQLite, and hooks around every NIC add and remove.
 *
 * @example
 * ```ts ignore
 * import { CniProvider } from "./mod.ts";
 *
 * const vmnic = await CniProvider.open();          // docs/cli.md defaults
 * const nics = await vmnic.add("vm1", { cpu: 2 }); // one NIC, 2 queue pairs
 * // start the hypervisor inside nics[0].netnsPath on nics[0].tap,
 * // with MAC nics[0].mac and IP nics[0].ips[0]
 * await vmnic.delete(["vm1"]);
 * vmnic.close();
 * ```
 *
 * @module
 */
export {
  type CniGcOptions,
  type CniGcSnapshot,
  CniProvider,
  DEFAULT_QUEUE_SIZE,
  type NetworkInfo,
  type NetworksReport,
  type OpenOptions,
  resolveConfig,
  type ResolvedConfig,
} from "./src/provider/provider.ts";
export {
  type AddSpec,
  DEFAULTS,
  type DeleteResult,
  type DnsConfig,
  type GuestIdentity,
  type GuestSpec,
  type IpConfig,
  type ListFilter,
  type NicConfig,
  type NicState,
  type NicVerdict,
  type PrepareOptions,
  type ProviderConfig,
  type RecoverResult,
  type RemoveResult,
  type RouteConfig,
  type TeardownOptions,
  type VerifyResult,
  type VmConfig,
  type VmInfo,
} from "./src/provider/types.ts";
export type { VerifyOptions } from "./src/provider/queries.ts";
export {
  BUILTIN_EGRESS,
  DEFAULT_POLICY_FILE,
  EGRESS_PROTOCOLS,
  type EgressProtocol,
  type EgressRule,
  type NicPolicy,
  type NormalizedSpec,
  type PolicySpec,
  type RateLimit,
  type RuleSource,
} from "./src/provider/policy.ts";
export {
  type PolicyChange,
  type PolicyResult,
  UNSETTABLE,
} from "./src/provider/policy_op.ts";
export type {
  CapabilityArgs,
  CniBandwidth,
  CniDns,
  PortMapping,
} from "./src/provider/capabilities.ts";
export {
  ConflictError,
  InterruptedError,
  InvalidInputError,
  NotFoundError,
  OperationError,
  RecordsLostError,
  RollbackIncompleteError,
  VmBusyError,
  VmnicError,
} from "./src/provider/errors.ts";
export {
  type GcModule,
  GcOrchestrator,
  type GcPlan,
  type GcReport,
} from "./src/provider/gc_orchestrator.ts";
export {
  type HvArgs,
  type HvArgsOptions,
  type Hypervisor,
  HYPERVISORS,
} from "./src/provider/hv_args.ts";
export {
  GUEST_CONFIG_FORMATS,
  type GuestConfigFile,
  type GuestConfigFormat,
} from "./src/provider/guest_config.ts";
export type {
  HookContext,
  HookEvent,
  HookInfo,
  HookInput,
  HookIp,
  HookOperation,
  TsHook,
} from "./src/hooks/types.ts";
export { defineHook } from "./src/hooks/types.ts";
export {
  HookError,
  type HookFailure,
  HookSecurityError,
  HookTimeoutError,
} from "./src/hooks/errors.ts";
export { VERSION } from "./src/version.ts";
// The seams `CniProvider.open` takes besides the settings: the kernel it
// works on, how CNI plugins run, and crash points (tests pass fakes).
export type {
  Kernel,
  NetnsScope,
  NetnsStack,
  TapOptions,
} from "./src/wiring/kernel.ts";
export type { RunNftOptions } from "./src/sys/libnftables.ts";
export type {
  NetlinkConn,
  Request,
  RequestContext,
} from "./src/netlink/conn.ts";
export type { Attr, NetlinkMessage } from "./src/netlink/codec.ts";
export type { PluginExec, PluginExecRequest } from "./src/cni/exec.ts";
export type { FaultHook } from "./src/provider/context.ts";
export { FAULT_POINTS, type FaultPoint } from "./src/provider/faults.ts";
// What the provider's methods take and give besides the types above.
export type { PoolSpec, PoolStatus } from "./src/provider/pool.ts";
export type {
  EventFilter,
  EventRecord,
  EventRetention,
  PhaseTiming,
} from "./src/store/events.ts";
export type { EventDetail, EventListener } from "./src/provider/context.ts";
export type { RecoverOptions } from "./src/provider/recover.ts";
export type { ChainPlugin, NetworkStatus } from "./src/provider/cni_verbs.ts";
