/**
 * The records in SQLite (`node:sqlite`): one row per VM this install made a
 * netns for, one row per NIC keyed by `(vm_id, nic_index)` with the CNI
 * result and the exact conflist text used (so DEL works after the conflist
 * changed), the install's identity, and cached plugin VERSION answers.
 *
 * Every change to a VM's rows is also written to its record backup
 * (`journal.ts`) before the transaction commits.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { join } from "../sys/path.ts";
import { DuplicateMacError, DuplicateNicError, StoreError } from "./errors.ts";
import { type EventRetention, EventTable } from "./events.ts";
import { Journal, type VmBackup } from "./journal.ts";
import { MIGRATIONS, SCHEMA_VERSION } from "./schema.ts";
import type {
  GuestRecord,
  IpRecord,
  NicRecord,
  NicState,
  VmRecord,
} from "./types.ts";
import { closeFd, fchmod, freeBytes, openNoFollow } from "../sys/files.ts";
import { O_CREAT, O_RDWR } from "../sys/fcntl.ts";
import { ensureSecureDir, InsecurePathError } from "../sys/secure_dir.ts";

/** File name of the database inside the root dir. */
export const DB_FILE_NAME = "vmnic.db";

/** How long a writer waits for another process's write lock. */
const BUSY_TIMEOUT_MS = 5000;

/** SQLite extended result code of a UNIQUE constraint violation. */
const SQLITE_CONSTRAINT_UNIQUE = 2067;

/** The meta key of the install id. */
const INSTALL_ID_KEY = "install_id";

/** The NIC columns in the order {@linkcode rowToRecord} and inserts use. */
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
  "error",
  "announced",
  "created_at",
  "guest_json",
  "policy_json",
  "capability_args_json",
] as const;

type Row = Record<(typeof COLUMNS)[number], string | number | null>;
type SqlValue = string | number | null;

const SELECT = `SELECT ${COLUMNS.join(", ")} FROM nics`;
const VM_COLUMNS =
  "vm_id, netns_path, network, quiesced, deleting, slot, claim_vm, created_at";

/** Filter for {@linkcode Store.listNics}. */
export interface NicFilter {
  /** Only the NICs of this VM. */
  vmId?: string;
}

/**
 * The record store. Open one per process with {@linkcode Store.open}; every
 * method is synchronous. Cross-process consistency comes from SQLite (WAL,
 * busy timeout); serialising whole operations on a VM is the job of the
 * per-VM locks in `locks.ts`.
 */
export class Store {
  readonly #db: DatabaseSync;
  readonly #path: string;
  readonly #stmts: ReturnType<typeof prepareStatements>;
  readonly #journal: Journal;
  /** VMs changed in the open transaction: their backups are due at COMMIT. */
  readonly #dirty = new Set<string>();
  #installId: string | null;
  #txDepth = 0;
  #closed = false;
  #events?: EventTable;

  private constructor(db: DatabaseSync, path: string, journal: Journal) {
    this.#db = db;
    this.#path = path;
    this.#journal = journal;
    this.#stmts = prepareStatements(db);
    const row = this.#stmts.getMeta.get(INSTALL_ID_KEY) as
      | { value: string }
      | undefined;
    this.#installId = row?.value ?? null;
  }

  /**
   * Whether `rootDir` holds a database with something in it. False for a
   * missing or empty (e.g. truncated) file: opening it gives a fresh store.
   */
  static exists(rootDir: string): boolean {
    try {
      const info = Deno.lstatSync(join(rootDir, DB_FILE_NAME));
      return !info.isFile || info.size > 0;
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return false;
      throw err;
    }
  }

  /**
   * Opens (creating if missing) `rootDir/vmnic.db`, brings its schema up to
   * date and returns the store. The root dir is created with mode 0700 and
   * must be safe (owned by root or vmnic's user, writable by no one else, as
   * each of its ancestors); the database is opened without following a
   * symlink and gets mode 0600.
   */
  static open(rootDir: string): Store {
    const path = join(rootDir, DB_FILE_NAME);
    try {
      ensureSecureDir(rootDir);
      prepareDbFile(path);
    } catch (err) {
      throw new StoreError(
        "open database",
        err instanceof InsecurePathError ? err.path : path,
        err instanceof InsecurePathError
          ? `${err.reason}: the root dir and its ancestors must be owned by root and writable by no one else`
          : errorText(err),
        { cause: err },
      );
    }
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path);
      db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA foreign_keys = ON");
      db.exec("PRAGMA synchronous = NORMAL");
    } catch (err) {
      throw new StoreError(
        "open database",
        path,
        errorText(err) + fullDiskNote(rootDir),
        { cause: err },
      );
    }
    try {
      migrate(db, path);
      return new Store(db, path, new Journal(rootDir));
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
   * The event log in this database (docs/events.md), with `retention`
   * taking effect from the first call on.
   */
  events(retention?: EventRetention): EventTable {
    this.#assertOpen();
    if (!this.#events || retention) {
      this.#events = new EventTable(this.#db, retention);
    }
    return this.#events;
  }

  /** The record backups' dir. */
  get journalDir(): string {
    return this.#journal.dir;
  }

  /**
   * The install's id, or null for a fresh database (no records, never
   * initialized).
   */
  get installId(): string | null {
    return this.#installId;
  }

  /**
   * Removes the backup of `vmId` when the database has no record of it:
   * one a crash left between writing the backup and the COMMIT it preceded
   * (the caller holds the VM's lock, so no transaction of it is open).
   * Returns whether one was removed.
   */
  dropOrphanBackup(vmId: string): boolean {
    this.#assertOpen();
    if (this.#installId === null) return false; // lost records: keep all
    if (this.getVm(vmId) || this.listNics({ vmId }).length) return false;
    if (!this.#journal.vmIds().includes(vmId)) return false;
    this.#journal.drop(vmId);
    return true;
  }

  /** Gives a fresh database its install id (kept beside the backups too). */
  initialize(installId: string): void {
    if (this.#installId !== null) {
      throw new StoreError(
        "initialize",
        this.#path,
        `already initialized (install ${this.#installId})`,
      );
    }
    // Processes that start at once on a fresh root dir all find it
    // uninitialized: the first to commit names the install, the others
    // take its id (their netns and leases must carry the same one).
    let id = installId;
    this.transaction(() => {
      const row = this.#stmts.getMeta.get(INSTALL_ID_KEY) as
        | { value: string }
        | undefined;
      if (row) {
        id = row.value;
        return;
      }
      this.#stmts.putMeta.run(INSTALL_ID_KEY, installId);
      this.#journal.writeInstall(installId);
    });
    this.#installId = id;
  }

  /** VM ids with a record backup, and the install id kept beside them. */
  backups(): { vmIds: string[]; installId: string | null } {
    return {
      vmIds: this.#journal.vmIds(),
      installId: this.#journal.installId(),
    };
  }

  /**
   * Rebuilds a fresh database from the record backups: the install id and
   * every VM with its NICs. Returns the VM ids restored.
   */
  restoreFromBackups(): string[] {
    if (this.listVmIds().length || this.listNics().length) {
      throw new StoreError(
        "restore records",
        this.#path,
        "the database is not empty: restore only replaces a lost or empty one",
      );
    }
    const backups = this.#journal.readAll();
    const ids = new Set(backups.map((b) => b.installId));
    const kept = this.#journal.installId();
    if (kept) ids.add(kept);
    // An empty database that already has an id restores only its own.
    if (this.#installId !== null) ids.add(this.#installId);
    if (ids.size > 1) {
      throw new StoreError(
        "restore records",
        this.#journal.dir,
        `backups of different installs (${
          [...ids].join(", ")
        }): keep only this install's`,
      );
    }
    const [installId] = [...ids];
    if (!installId) {
      throw new StoreError(
        "restore records",
        this.#journal.dir,
        "no record backups to restore from",
      );
    }
    // Set first: the backups rewritten at COMMIT carry it.
    const before = this.#installId;
    this.#installId = installId;
    try {
      this.transaction(() => {
        this.#stmts.putMeta.run(INSTALL_ID_KEY, installId);
        for (const b of backups) {
          this.insertVm(b.vm);
          for (const n of b.nics) this.insertNic(n);
        }
      });
    } catch (err) {
      this.#installId = before;
      throw err;
    }
    return backups.map((b) => b.vm.vmId);
  }

  // ------------------------------------------------------------------ VMs

  /** Records a VM; nothing changes when it is recorded already. */
  insertVm(vm: VmRecord): void {
    this.#write("insert vm", vm.vmId, () =>
      this.#stmts.insertVm.run(
        vm.vmId,
        vm.netnsPath,
        vm.network,
        vm.quiesced ? 1 : 0,
        vm.deleting ? 1 : 0,
        vm.slot ?? null,
        vm.claimVm ?? null,
        vm.createdAt,
      ));
  }

  /** The VM's record, or null. */
  getVm(vmId: string): VmRecord | null {
    const row = this.#query("get vm", vmId, () => this.#stmts.getVm.get(vmId));
    return row ? rowToVm(row) : null;
  }

  /** Every VM record, by id. */
  listVms(): VmRecord[] {
    return this.#query("list vms", "all", () => this.#stmts.listVms.all())
      .map(rowToVm);
  }

  /** Sets the VM's network (the one later NICs join when none is named). */
  setVmNetwork(vmId: string, network: string): void {
    this.#write(
      "update vm",
      vmId,
      () => this.#stmts.setVmNetwork.run(network, vmId),
    );
  }

  /**
   * Sets the VM's quiesced flag, and moves its NICs between `active` and
   * `quiesced` to match, in one transaction.
   */
  setQuiesced(vmId: string, quiesced: boolean): void {
    this.#write("quiesce vm", vmId, () => {
      this.#stmts.setVmQuiesced.run(quiesced ? 1 : 0, vmId);
      this.#stmts.moveState.run(
        quiesced ? "quiesced" : "active",
        vmId,
        quiesced ? "active" : "quiesced",
      );
    });
  }

  /**
   * Marks the VM as being deleted and its NICs (but `failed` ones, which
   * keep their error) as `deleting`, in one transaction.
   */
  markVmDeleting(vmId: string): void {
    this.#write("mark vm deleting", vmId, () => {
      this.#stmts.setVmDeleting.run(vmId);
      this.#stmts.setStateLive.run("deleting", null, vmId, "failed");
    });
  }

  /**
   * Records which VM a pool slot is being handed to (null: none). Backed up
   * like any change: a database rebuilt from backups after a crash
   * mid-claim still knows whose netns to rename back.
   */
  setSlotClaim(slotId: string, vmId: string | null): void {
    this.#write(
      "claim slot",
      slotId,
      () => this.#stmts.setClaim.run(vmId, slotId),
    );
  }

  /**
   * Hands a pool slot to a VM in one transaction: the VM's record made
   * (`vm`), the slot's NICs moved to it (`move` rewrites each: its VM id,
   * netns path, CNI result), the slot's record gone.
   */
  moveSlot(
    slotId: string,
    vm: VmRecord,
    move: (nic: NicRecord) => NicRecord,
  ): NicRecord[] {
    let moved: NicRecord[] = [];
    this.transaction(() => {
      this.insertVm(vm);
      moved = this.listNics({ vmId: slotId }).map(move);
      for (const n of moved) this.updateNic(n);
      this.#dirty.add(slotId);
      this.#query("delete vm", slotId, () => this.#stmts.deleteVm.run(slotId));
    });
    return moved;
  }

  /**
   * Removes the VM's record. Its NICs must be gone first (the schema refuses
   * otherwise); returns whether there was one.
   */
  deleteVm(vmId: string): boolean {
    let n = 0;
    this.#write("delete vm", vmId, () => {
      n = Number(this.#stmts.deleteVm.run(vmId).changes);
    });
    return n > 0;
  }

  /** Every VM id recorded (with or without NICs), sorted. */
  listVmIds(): string[] {
    return this.#query("list vms", "all", () => this.#stmts.vmIds.all())
      .map((row) => String(row.vm_id));
  }

  // ----------------------------------------------------------------- NICs

  /**
   * Records a NIC. Throws {@linkcode DuplicateNicError} when the VM already
   * has a NIC with that index; nothing is changed then.
   */
  insertNic(r: NicRecord): void {
    const values = recordToValues(r);
    try {
      this.#write(
        "insert nic",
        r.vmId,
        () => this.#stmts.insert.run(...values),
      );
    } catch (err) {
      const cause = (err as { cause?: unknown })?.cause ?? err;
      if (isUniqueViolation(cause, "nics.vm_id, nics.nic_index")) {
        throw new DuplicateNicError(r.vmId, r.index, { cause: err });
      }
      if (isUniqueViolation(cause, "nics.mac")) {
        throw new DuplicateMacError(r.mac, { cause: err });
      }
      throw err;
    }
  }

  /**
   * Replaces every field of the NIC with `r.id` (e.g. a new CNI result).
   * Throws {@linkcode StoreError} when no such NIC exists.
   */
  updateNic(r: NicRecord): void {
    const [id, ...rest] = recordToValues(r);
    let changes = 0;
    this.#write("update nic", r.vmId, () => {
      changes = Number(this.#stmts.update.run(...rest, id).changes);
    });
    if (changes === 0) {
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

  /** The NICs with this MAC (lower case), any VM. */
  nicsWithMac(mac: string): NicRecord[] {
    return this.#query("find mac", mac, () => this.#stmts.byMac.all(mac))
      .map((row) => rowToRecord(row as Row));
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
   * Moves NICs of `vmId` to `state` (with `error` for `failed`): all of
   * them, or those with the given indices.
   */
  setNicState(
    vmId: string,
    state: NicState,
    opts: { indices?: number[]; error?: string } = {},
  ): void {
    const error = state === "failed"
      ? opts.error ?? "unknown error"
      : state === "adding"
      ? opts.error ?? null
      : null;
    this.#write(`mark ${state}`, vmId, () => {
      if (opts.indices === undefined) {
        this.#stmts.setStateVm.run(state, error, vmId);
        return;
      }
      for (const index of opts.indices) {
        this.#stmts.setStateOne.run(state, error, vmId, index);
      }
    });
  }

  /** Removes the record of NIC `index` of `vmId` (absent is fine). */
  deleteNic(vmId: string, index: number): void {
    this.#write(
      "delete nic",
      vmId,
      () => this.#stmts.deleteOne.run(vmId, index),
    );
  }

  // ------------------------------------------------------- plugin versions

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

  // ----------------------------------------------------------- transactions

  /**
   * Runs `fn` in one transaction: all its writes commit together, or none
   * when it throws. Nests (inner calls become savepoints). `fn` must be
   * synchronous; an `async` function would commit before its awaits ran.
   * The record backups of the VMs it changed are written before COMMIT.
   */
  transaction<T>(fn: () => T): T {
    this.#assertOpen();
    const depth = this.#txDepth;
    const savepoint = `vmnic_sp${depth}`;
    // IMMEDIATE takes the write lock up front, so a read-then-write inside
    // the transaction cannot fail half-way with SQLITE_BUSY.
    this.#exec(depth === 0 ? "BEGIN IMMEDIATE" : `SAVEPOINT ${savepoint}`);
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
      if (depth === 0) {
        this.#writeBackups();
        this.#exec("COMMIT");
      } else {
        this.#exec(`RELEASE ${savepoint}`);
      }
      return result;
    } catch (err) {
      this.#rollback(depth, savepoint);
      throw err;
    } finally {
      this.#txDepth--;
      if (depth === 0) this.#dirty.clear();
    }
  }

  /** Closes the database. Further calls throw. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }

  /**
   * Undoes the open transaction (or savepoint). SQLite itself rolls back a
   * transaction that hit a full disk (SQLITE_FULL), so there may be none
   * left to undo: the error that caused this is the one to report.
   */
  #rollback(depth: number, savepoint: string): void {
    if (!this.#db.isTransaction) return;
    try {
      if (depth === 0) this.#db.exec("ROLLBACK");
      else this.#db.exec(`ROLLBACK TO ${savepoint}; RELEASE ${savepoint}`);
    } catch {
      // The original error matters; SQLite ends the transaction either way.
    }
  }

  #writeBackups(): void {
    const installId = this.#installId;
    for (const vmId of this.#dirty) {
      const vm = this.getVm(vmId);
      const nics = this.listNics({ vmId });
      const backup: VmBackup | null = vm && installId
        ? { format: 1, installId, vm, nics }
        : null;
      try {
        this.#journal.write(vmId, backup);
      } catch {
        // A backup that cannot be written (a full disk) must not stop the
        // change, least of all a teardown that would free space; it is
        // removed rather than left behind, and written at the VM's next
        // change.
        this.#journal.drop(vmId);
      }
    }
  }

  /** A write to `vmId`'s rows, in a transaction of its own if none is open. */
  #write(op: string, vmId: string, fn: () => unknown): void {
    if (this.#installId === null) {
      // Its backups would be written without an owner: initialize first.
      throw new StoreError(op, vmId, "the database is not initialized");
    }
    this.transaction(() => {
      this.#query(op, vmId, fn);
      this.#dirty.add(vmId);
    });
  }

  #exec(sql: string): void {
    try {
      this.#db.exec(sql);
    } catch (err) {
      throw this.#fail(sql.split(" ")[0].toLowerCase(), this.#path, err);
    }
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

/**
 * Makes sure what is at the database's paths is ours before SQLite opens
 * them: regular files (never symlinks), owned by vmnic's user, mode 0600.
 * A missing database file is created here, without following a symlink.
 * An existing one is only looked at and chmod-ed, never opened: closing a
 * descriptor of a file drops every POSIX lock this process holds on it,
 * including SQLite's own (another connection would then truncate the
 * shared memory under this one). SQLite gives its side files the
 * database's mode.
 */
function prepareDbFile(path: string): void {
  const uid = Deno.uid();
  for (const p of [path, `${path}-wal`, `${path}-shm`]) {
    let info: Deno.FileInfo | null = null;
    try {
      info = Deno.lstatSync(p);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    if (info && !info.isFile) {
      throw new Error(
        `${p} is ${
          info.isSymlink ? "a symlink" : "not a regular file"
        }: vmnic never follows links where it keeps its records; remove it`,
      );
    }
    if (info && uid !== null && info.uid !== uid) {
      throw new Error(`${p} is owned by uid ${info.uid}, not ${uid}`);
    }
    if (p !== path) continue;
    if (!info) {
      const fd = openNoFollow(p, O_RDWR | O_CREAT, 0o600, "open database");
      try {
        fchmod(fd, 0o600, p);
      } finally {
        closeFd(fd);
      }
    } else if ((info.mode! & 0o777) !== 0o600) {
      // No symlink (checked above) in a dir only root can write to.
      Deno.chmodSync(p, 0o600);
    }
  }
}

function prepareStatements(db: DatabaseSync) {
  const p = (sql: string): StatementSync => db.prepare(sql);
  const placeholders = COLUMNS.map(() => "?").join(", ");
  const assignments = COLUMNS.slice(1).map((c) => `${c} = ?`).join(", ");
  return {
    getMeta: p("SELECT value FROM meta WHERE key = ?"),
    putMeta: p("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"),
    insertVm: p(
      `INSERT OR IGNORE INTO vms (${VM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    getVm: p(`SELECT ${VM_COLUMNS} FROM vms WHERE vm_id = ?`),
    listVms: p(`SELECT ${VM_COLUMNS} FROM vms ORDER BY vm_id`),
    setVmNetwork: p("UPDATE vms SET network = ? WHERE vm_id = ?"),
    setVmQuiesced: p("UPDATE vms SET quiesced = ? WHERE vm_id = ?"),
    setVmDeleting: p("UPDATE vms SET deleting = 1 WHERE vm_id = ?"),
    setClaim: p("UPDATE vms SET claim_vm = ? WHERE vm_id = ?"),
    setStateLive: p(
      "UPDATE nics SET state = ?, error = ? WHERE vm_id = ? AND state <> ?",
    ),
    moveState: p(
      "UPDATE nics SET state = ? WHERE vm_id = ? AND state = ?",
    ),
    deleteVm: p("DELETE FROM vms WHERE vm_id = ?"),
    vmIds: p("SELECT vm_id FROM vms ORDER BY vm_id"),
    insert: p(
      `INSERT INTO nics (${COLUMNS.join(", ")}) VALUES (${placeholders})`,
    ),
    update: p(`UPDATE nics SET ${assignments} WHERE id = ?`),
    getById: p(`${SELECT} WHERE id = ?`),
    getByIndex: p(`${SELECT} WHERE vm_id = ? AND nic_index = ?`),
    byMac: p(
      `${SELECT} WHERE mac = ? AND mac <> '' ORDER BY vm_id, nic_index`,
    ),
    listAll: p(`${SELECT} ORDER BY vm_id, nic_index`),
    listByVm: p(`${SELECT} WHERE vm_id = ? ORDER BY nic_index`),
    indices: p(
      "SELECT nic_index FROM nics WHERE vm_id = ? ORDER BY nic_index",
    ),
    setStateVm: p("UPDATE nics SET state = ?, error = ? WHERE vm_id = ?"),
    setStateOne: p(
      "UPDATE nics SET state = ?, error = ? WHERE vm_id = ? AND nic_index = ?",
    ),
    deleteOne: p("DELETE FROM nics WHERE vm_id = ? AND nic_index = ?"),
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
    if (db.isTransaction) db.exec("ROLLBACK");
    throw err;
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
    r.error ?? null,
    r.announced ? 1 : 0,
    r.createdAt,
    r.guest ? JSON.stringify(r.guest) : null,
    r.policy ? JSON.stringify(r.policy) : null,
    r.capabilityArgs ? JSON.stringify(r.capabilityArgs) : null,
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
    error: row.error === null ? null : String(row.error),
    announced: Number(row.announced) === 1,
    createdAt: String(row.created_at),
    ...(row.guest_json === null || row.guest_json === undefined
      ? {}
      : { guest: JSON.parse(String(row.guest_json)) as GuestRecord }),
    ...(row.policy_json === null || row.policy_json === undefined ? {} : {
      policy: JSON.parse(String(row.policy_json)) as Record<string, unknown>,
    }),
    ...(row.capability_args_json === null ||
        row.capability_args_json === undefined
      ? {}
      : {
        capabilityArgs: JSON.parse(String(row.capability_args_json)) as Record<
          string,
          unknown
        >,
      }),
  };
}

function rowToVm(row: Record<string, unknown>): VmRecord {
  return {
    vmId: String(row.vm_id),
    netnsPath: String(row.netns_path),
    network: row.network === null ? null : String(row.network),
    quiesced: Number(row.quiesced) === 1,
    deleting: Number(row.deleting) === 1,
    slot: row.slot === null || row.slot === undefined ? null : String(row.slot),
    claimVm: row.claim_vm === null || row.claim_vm === undefined
      ? null
      : String(row.claim_vm),
    createdAt: String(row.created_at),
  };
}

function isUniqueViolation(err: unknown, columns: string): boolean {
  const e = err as { errcode?: number; message?: string };
  return e?.errcode === SQLITE_CONSTRAINT_UNIQUE &&
    typeof e.message === "string" && e.message.includes(columns);
}

/**
 * Why SQLite failed when it says only "disk I/O error" (it cannot create
 * its WAL files on a full file system): said when the root dir's file
 * system has no room.
 */
function fullDiskNote(rootDir: string): string {
  const free = freeBytes(rootDir);
  return free !== null && free < MIN_FREE_BYTES
    ? ` (no space left on the file system of ${rootDir}: ${free} bytes free)`
    : "";
}

/** Less room than this is a full disk for SQLite (a WAL and its index). */
const MIN_FREE_BYTES = 64n * 1024n;

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
