/**
 * The store layer: NIC records in SQLite and per-VM locks.
 *
 * @module
 */
export { DB_FILE_NAME, type NicFilter, Store } from "./store.ts";
export {
  type IpRecord,
  newNicId,
  type NicRecord,
  type NicState,
} from "./types.ts";
export {
  DuplicateNicError,
  LockError,
  LockTimeoutError,
  StoreError,
} from "./errors.ts";
export { acquireVmLock, type LockOptions, type VmLock } from "./locks.ts";
export { type Migration, MIGRATIONS, SCHEMA_VERSION } from "./schema.ts";
