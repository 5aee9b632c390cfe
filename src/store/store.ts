/**
 * The NIC records in SQLite (`node:sqlite`): one row per NIC keyed by
 * `(vm_id, nic_index)`, with the CNI result and the exact conflist text used,
 * so a DEL works even after the conflist changed.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { join } from "node:path";
import { DuplicateNicError, StoreError } from "./errors.ts";
import { MIGRATIONS, SCHEMA_VERSION } from "./schema.ts";
import type { IpRecord, NicRecord, NicState } from "./types.ts";

/** File name of the database inside the root dir. */
export const DB_FILE_NAME = "vmnic.db";

/** How long a writer waits for another process's write lock. */
const BUSY_TIMEOUT_MS = 5000;

/** SQLite extended result code of a UNIQUE constraint violation. */
const SQLITE_CONSTRAINT_UNIQUE = 2067;

/** The columns in the order {@linkcode rowToRecord} and inserts use. */
const COLUMNS = [
  "id",
  "vm_id",
  "nic_index",
  "if_name",
  "tap",
  "mac",
  "network",
  "netns_path",
  "num_queues",
  "queue_size",
  "mtu",
  "ips_json",
  "dns_json",
  "cni_result_json",
  "cni_config_json",
  "container_id",
  "state",
  "created_at",
] as const;

type Row = Record<(typeof COLUMNS)[number], string | number>;
type SqlValue = string | number | null;

const SELECT = `SELECT ${COLUMNS.join(", ")} FROM nics`;

/** Filter for {@linkcode Store.listNics}. */
export interface NicFilter {
  /** Only the NICs of this VM. */
  vmId?: string;
}

/**
 * The NIC store. Open one per process with {@linkcode Store.open}; every
 * method is synchronous. Cross-process consistency comes from SQLite (WAL,
 * busy timeout); serialising whole operations on a VM is the job of the
 * per-VM locks in `locks.ts`.
 */
export class Store {
  readonly #db: DatabaseSync;
  readonly #path: string;
  readonly #stmts: ReturnType<typeof prepareStatements>;
  #txDepth = 0;
  #closed = false;

  private constructor(db: DatabaseSync, path: string) {
    this.#db = db;
    this.#path = path;
    this.#stmts = prepareStatements(db);
  }

  /**
   * Opens (creating if missing) `rootDir/vmnic.db`, brings its schema up to
   * date and returns the store. The root dir is created with mode 0700, the
   * database files get mode 0600.
   */
  static open(rootDir: string): Store {
    const path = join(rootDir, DB_FILE_NAME);
    try {
      Deno.mkdirSync(rootDir, { recursive: true, mode: 0o700 });
      // Create the file ourselves so it never exists with a wider mode.
      Deno.openSync(path, { create: true, write: true, mode: 0o600 }).close();
      Deno.chmodSync(path, 0o600);
    } catch (err) {
      throw new StoreError("open database", path, String(err), { cause: err });
    }
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path);
      db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA foreign_keys = ON");
      db.exec("PRAGMA synchronous = NORMAL");
    } catch (err) {
      throw new StoreError("open database", path, errorText(err), {
        cause: err,
      });
    }
    try {
      migrate(db, path);
      restrictSideFiles(path);
      return new Store(db, path);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  /** The database file path. */
  get path(): string {
    return this.#path;
  }

  /**
   * Records a NIC. Throws {@linkcode DuplicateNicError} when the VM already
   * has a NIC with that index; nothing is changed then.
   */
  insertNic(r: NicRecord): void {
    const values = recordToValues(r);
    try {
      this.#stmts.insert.run(...values);
    } catch (err) {
      if (isUniqueViolation(err, "nics.vm_id, nics.nic_index")) {
        throw new DuplicateNicError(r.vmId, r.index, { cause: err });
      }
      throw this.#fail("insert nic", `${r.vmId}/${r.index}`, err);
    }
  }

  /**
   * Replaces every field of the NIC with `r.id` (e.g. a new CNI result after
   * recovery). Throws {@linkcode StoreError} when no such NIC exists.
   */
  updateNic(r: NicRecord): void {
    const [id, ...rest] = recordToValues(r);
    let changes: number | bigint;
    try {
      changes = this.#stmts.update.run(...rest, id).changes;
    } catch (err) {
      if (isUniqueViolation(err, "nics.vm_id, nics.nic_index")) {
        throw new DuplicateNicError(r.vmId, r.index, { cause: err });
      }
      throw this.#fail("update nic", r.id, err);
    }
    if (Number(changes) === 0) {
      throw new StoreError("update nic", r.id, "no such NIC");
    }
  }

  /** The NIC with this id, or `null`. */
  getNic(id: string): NicRecord | null {
    const row = this.#query("get nic", id, () => this.#stmts.getById.get(id));
    return row ? rowToRecord(row as Row) : null;
  }

  /** The NIC `index` of `vmId`, or `null`. */
  getNicByIndex(vmId: string, index: number): NicRecord | null {
    const row = this.#query(
      "get nic",
      `${vmId}/${index}`,
      () => this.#stmts.getByIndex.get(vmId, index),
    );
    return row ? rowToRecord(row as Row) : null;
  }

  /** NICs, ordered by VM id then index; all of them or those of one VM. */
  listNics(filter: NicFilter = {}): NicRecord[] {
    const rows = filter.vmId === undefined
      ? this.#query("list nics", "all", () => this.#stmts.listAll.all())
      : this.#query(
        "list nics",
        filter.vmId,
        () => this.#stmts.listByVm.all(filter.vmId!),
      );
    return rows.map((row) => rowToRecord(row as Row));
  }

  /** Every VM id with at least one NIC recorded, sorted. */
  listVmIds(): string[] {
    const rows = this.#query("list vms", "all", () => this.#stmts.vmIds.all());
    return rows.map((row) => String(row.vm_id));
  }

  /** The NIC indices recorded for `vmId`, ascending. */
  usedIndices(vmId: string): number[] {
    const rows = this.#query(
      "list indices",
      vmId,
      () => this.#stmts.indices.all(vmId),
    );
    return rows.map((row) => Number(row.nic_index));
  }

  /**
   * Marks the NICs of `vmId` as `deleting`: all of them, or those with the
   * given indices.
   */
  markDeleting(vmId: string, indices?: number[]): void {
    this.#setState(vmId, "deleting", indices);
  }

  /** Removes the record of NIC `index` of `vmId` (absent is fine). */
  deleteNic(vmId: string, index: number): void {
    this.#query(
      "delete nic",
      `${vmId}/${index}`,
      () => this.#stmts.deleteOne.run(vmId, index),
    );
  }

  /** Removes every record of `vmId`; returns how many there were. */
  deleteVm(vmId: string): number {
    const res = this.#query(
      "delete vm",
      vmId,
      () => this.#stmts.deleteVm.run(vmId),
    );
    return Number(res.changes);
  }

  /**
   * A cached plugin VERSION answer (JSON) by binary identity, or null. The
   * CNI runtime keeps these so short-lived CLI processes need not exec
   * VERSION on every call.
   */
  getPluginVersion(key: string): unknown {
    const row = this.#query(
      "get plugin version",
      key,
      () => this.#stmts.getPluginVersion.get(key),
    ) as { info_json: string } | undefined;
    return row ? JSON.parse(row.info_json) : null;
  }

  /** Stores a plugin VERSION answer under its binary identity. */
  putPluginVersion(key: string, info: unknown): void {
    this.#query(
      "put plugin version",
      key,
      () => this.#stmts.putPluginVersion.run(key, JSON.stringify(info)),
    );
  }

  /**
   * Runs `fn` in one transaction: all its writes commit together, or none
   * when it throws. Nests (inner calls become savepoints). `fn` must be
   * synchronous; an `async` function would commit before its awaits ran.
   */
  transaction<T>(fn: () => T): T {
    this.#assertOpen();
    const depth = this.#txDepth;
    const savepoint = `vmnic_sp${depth}`;
    // IMMEDIATE takes the write lock up front, so a read-then-write inside
    // the transaction cannot fail half-way with SQLITE_BUSY.
    this.#db.exec(depth === 0 ? "BEGIN IMMEDIATE" : `SAVEPOINT ${savepoint}`);
    this.#txDepth++;
    try {
      const result = fn();
      if (result instanceof Promise) {
        throw new StoreError(
          "transaction",
          this.#path,
          "the function returned a Promise; transactions must be synchronous",
        );
      }
      this.#db.exec(depth === 0 ? "COMMIT" : `RELEASE ${savepoint}`);
      return result;
    } catch (err) {
      if (depth === 0) this.#db.exec("ROLLBACK");
      else this.#db.exec(`ROLLBACK TO ${savepoint}; RELEASE ${savepoint}`);
      throw err;
    } finally {
      this.#txDepth--;
    }
  }

  /** Closes the database. Further calls throw. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }

  #setState(vmId: string, state: NicState, indices?: number[]): void {
    const object = indices ? `${vmId}/${indices.join(",")}` : vmId;
    const op = `mark ${state}`;
    if (indices === undefined) {
      this.#query(op, object, () => this.#stmts.setStateVm.run(state, vmId));
      return;
    }
    this.transaction(() => {
      for (const index of indices) {
        this.#query(
          op,
          object,
          () => this.#stmts.setStateOne.run(state, vmId, index),
        );
      }
    });
  }

  #query<T>(op: string, object: string, fn: () => T): T {
    this.#assertOpen();
    try {
      return fn();
    } catch (err) {
      throw this.#fail(op, object, err);
    }
  }

  #assertOpen(): void {
    if (this.#closed) {
      throw new StoreError("use store", this.#path, "the store is closed");
    }
  }

  #fail(op: string, object: string, err: unknown): StoreError {
    return err instanceof StoreError
      ? err
      : new StoreError(op, object, errorText(err), { cause: err });
  }
}

function prepareStatements(db: DatabaseSync) {
  const p = (sql: string): StatementSync => db.prepare(sql);
  const placeholders = COLUMNS.map(() => "?").join(", ");
  const assignments = COLUMNS.slice(1).map((c) => `${c} = ?`).join(", ");
  return {
    insert: p(
      `INSERT INTO nics (${COLUMNS.join(", ")}) VALUES (${placeholders})`,
    ),
    update: p(`UPDATE nics SET ${assignments} WHERE id = ?`),
    getById: p(`${SELECT} WHERE id = ?`),
    getByIndex: p(`${SELECT} WHERE vm_id = ? AND nic_index = ?`),
    listAll: p(`${SELECT} ORDER BY vm_id, nic_index`),
    listByVm: p(`${SELECT} WHERE vm_id = ? ORDER BY nic_index`),
    vmIds: p("SELECT DISTINCT vm_id FROM nics ORDER BY vm_id"),
    indices: p(
      "SELECT nic_index FROM nics WHERE vm_id = ? ORDER BY nic_index",
    ),
    setStateVm: p("UPDATE nics SET state = ? WHERE vm_id = ?"),
    setStateOne: p(
      "UPDATE nics SET state = ? WHERE vm_id = ? AND nic_index = ?",
    ),
    deleteOne: p("DELETE FROM nics WHERE vm_id = ? AND nic_index = ?"),
    deleteVm: p("DELETE FROM nics WHERE vm_id = ?"),
    getPluginVersion: p(
      "SELECT info_json FROM plugin_versions WHERE plugin_key = ?",
    ),
    putPluginVersion: p(
      "INSERT OR REPLACE INTO plugin_versions (plugin_key, info_json) VALUES (?, ?)",
    ),
  };
}

/** Applies the pending migrations, all in one transaction. */
function migrate(db: DatabaseSync, path: string): void {
  const version = () =>
    Number(db.prepare("PRAGMA user_version").get()?.user_version ?? 0);
  if (version() === SCHEMA_VERSION) return;
  try {
    // Another process may migrate at the same time: re-read the version
    // under the write lock.
    db.exec("BEGIN IMMEDIATE");
  } catch (err) {
    throw new StoreError("migrate database", path, errorText(err), {
      cause: err,
    });
  }
  try {
    const from = version();
    if (from > SCHEMA_VERSION) {
      throw new StoreError(
        "migrate database",
        path,
        `schema version ${from} is newer than this vmnic knows (${SCHEMA_VERSION}); upgrade vmnic`,
      );
    }
    for (let v = from; v < SCHEMA_VERSION; v++) {
      const m = MIGRATIONS[v];
      try {
        db.exec(m.sql);
      } catch (err) {
        throw new StoreError(
          "migrate database",
          path,
          `step ${v + 1} (${m.description}): ${errorText(err)}`,
          { cause: err },
        );
      }
    }
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    db.exec("COMMIT");
  } catch (err) {
    db.exec("ROLLBACK");
    throw err;
  }
}

/** WAL and shared-memory files hold the same data: same mode as the db. */
function restrictSideFiles(path: string): void {
  for (const suffix of ["-wal", "-shm"]) {
    try {
      Deno.chmodSync(path + suffix, 0o600);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) {
        throw new StoreError("open database", path + suffix, String(err), {
          cause: err,
        });
      }
    }
  }
}

function recordToValues(r: NicRecord): SqlValue[] {
  return [
    r.id,
    r.vmId,
    r.index,
    r.ifName,
    r.tap,
    r.mac,
    r.network,
    r.netnsPath,
    r.numQueues,
    r.queueSize,
    r.mtu,
    JSON.stringify(r.ips),
    JSON.stringify(r.dns),
    // `undefined` has no JSON text; keep the column NOT NULL with "null".
    JSON.stringify(r.cniResult ?? null),
    r.cniConfig,
    r.containerId,
    r.state,
    r.createdAt,
  ];
}

function rowToRecord(row: Row): NicRecord {
  return {
    id: String(row.id),
    vmId: String(row.vm_id),
    index: Number(row.nic_index),
    ifName: String(row.if_name),
    tap: String(row.tap),
    mac: String(row.mac),
    network: String(row.network),
    netnsPath: String(row.netns_path),
    numQueues: Number(row.num_queues),
    queueSize: Number(row.queue_size),
    mtu: Number(row.mtu),
    ips: JSON.parse(String(row.ips_json)) as IpRecord[],
    dns: JSON.parse(String(row.dns_json)) as Record<string, unknown>,
    cniResult: JSON.parse(String(row.cni_result_json)),
    cniConfig: String(row.cni_config_json),
    containerId: String(row.container_id),
    state: String(row.state) as NicState,
    createdAt: String(row.created_at),
  };
}

function isUniqueViolation(err: unknown, columns: string): boolean {
  const e = err as { errcode?: number; message?: string };
  return e?.errcode === SQLITE_CONSTRAINT_UNIQUE &&
    typeof e.message === "string" && e.message.includes(columns);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
