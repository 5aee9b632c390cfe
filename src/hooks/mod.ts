/**
 * The hooks layer: TS hooks from the registry and executables from the
 * host's hooks dir, run around NIC add and remove.
 *
 * @module
 */
export {
  DEFAULT_HOOK_TIMEOUT_MS,
  DEFAULT_HOOKS_DIR,
  HookRunner,
  type HookRunnerOptions,
  type HookSet,
} from "./runner.ts";
export {
  defineHook,
  HOOK_EVENTS,
  type HookContext,
  type HookEvent,
  type HookInfo,
  type HookInput,
  type HookIp,
  type HookOperation,
  type HookRunReport,
  type TsHook,
} from "./types.ts";
export {
  HookConfigError,
  HookError,
  type HookFailure,
  HookSecurityError,
  HookTimeoutError,
} from "./errors.ts";
