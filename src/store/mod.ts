/**
 * The store layer: VM and NIC records in SQLite with their backups, and
 * per-VM locks.
 *
 * @module
 */
export { DB_FILE_NAME, type NicFilter, Store } from "./store.ts";
export {
  type IpRecord,
  newInstallId,
  newNicId,
  NIC_STATES,
  type NicRecord,
  type NicState,
  type VmRecord,
} from "./types.ts";
export {
  DuplicateMacError,
  DuplicateNicError,
  LockError,
  LockInterruptedError,
  LockTimeoutError,
  StoreError,
} from "./errors.ts";
export {
  acquireVmLock,
  lockedVmIds,
  type LockHolder,
  lockHolder,
  type LockOptions,
  type VmLock,
} from "./locks.ts";
export {
  DEFAULT_EVENT_RETENTION,
  type EventFilter,
  type EventRecord,
  type EventRetention,
  EventTable,
  type PhaseTiming,
} from "./events.ts";
export { Journal, JOURNAL_DIR_NAME, type VmBackup } from "./journal.ts";
export { type Migration, MIGRATIONS, SCHEMA_VERSION } from "./schema.ts";
