/**
 * The provider as the CLI and the daemon open it: `CniProvider` and what
 * its operations take and give. The CLI loads it on demand, only for
 * commands that open a provider; before that it checks input with the
 * small leaf modules (`validate.ts`, `errors.ts`), so `vmnic version` and
 * `--help` never load the provider's module graph. Library users import
 * the repository's `mod.ts`.
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
} from "./provider.ts";
export type * from "./types.ts";
export * from "./errors.ts";
