/**
 * The provider's settings with every default filled in, and the checks on
 * them that must pass before anything is touched.
 *
 * @module
 */
import { DEFAULTS, type ProviderConfig } from "./types.ts";
import { InvalidInputError } from "./errors.ts";
import { DEFAULT_EVENT_RETENTION } from "../store/events.ts";

/** The settings in effect, every default filled in. */
export type ResolvedConfig = Required<ProviderConfig>;

/**
 * A netns prefix: empty, or up to 32 of `[A-Za-z0-9_.-]` starting with a
 * letter or digit, so that prefix + VM id is a valid netns name and a valid
 * CNI container id (which must start with a letter or digit).
 */
export const NETNS_PREFIX_PATTERN = /^(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,31})?$/;

/** Fills in the defaults of docs/cli.md ("Settings"). */
export function resolveConfig(cfg: ProviderConfig = {}): ResolvedConfig {
  return {
    rootDir: cfg.rootDir ?? DEFAULTS.rootDir,
    runDir: cfg.runDir ?? DEFAULTS.runDir,
    cniConfDir: cfg.cniConfDir ?? DEFAULTS.cniConfDir,
    cniBinDirs: cfg.cniBinDirs ?? [...DEFAULTS.cniBinDirs],
    netnsDir: cfg.netnsDir ?? DEFAULTS.netnsDir,
    netnsPrefix: cfg.netnsPrefix ?? DEFAULTS.netnsPrefix,
    hooksDir: cfg.hooksDir ?? DEFAULTS.hooksDir,
    policyFile: cfg.policyFile ?? DEFAULTS.policyFile,
    pluginTimeoutMs: cfg.pluginTimeoutMs ?? DEFAULTS.pluginTimeoutMs,
    hookTimeoutMs: cfg.hookTimeoutMs ?? DEFAULTS.hookTimeoutMs,
    lockWaitMs: cfg.lockWaitMs ?? DEFAULTS.lockWaitMs,
    tsHooks: cfg.tsHooks ?? true,
    eventRetention: cfg.eventRetention === undefined
      ? DEFAULT_EVENT_RETENTION
      : cfg.eventRetention,
  };
}

/** Throws {@linkcode InvalidInputError} for settings vmnic cannot work with. */
export function validateConfig(cfg: ResolvedConfig): void {
  if (!NETNS_PREFIX_PATTERN.test(cfg.netnsPrefix)) {
    throw new InvalidInputError(
      "open",
      cfg.netnsPrefix,
      `invalid netns prefix ${
        JSON.stringify(cfg.netnsPrefix)
      }: empty, or up to 32 of [A-Za-z0-9_.-] starting with a letter or digit ` +
        `(prefix + VM id must be a valid CNI container id)`,
    );
  }
  for (const [key, value] of Object.entries(cfg)) {
    if (typeof value === "string" && key.endsWith("Dir") && !value) {
      throw new InvalidInputError("open", key, `${key} must not be empty`);
    }
  }
  for (
    const key of ["pluginTimeoutMs", "hookTimeoutMs", "lockWaitMs"] as const
  ) {
    const v = cfg[key];
    const min = key === "lockWaitMs" ? 0 : 1;
    if (!Number.isFinite(v) || v < min || v > 24 * 3600_000) {
      throw new InvalidInputError(
        "open",
        key,
        `${key} must be a number of ms from ${min} to one day, got ${v}`,
      );
    }
  }
}
