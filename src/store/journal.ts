/**
 * Record backups: for each VM, an append-only log of its records in
 * `<rootDir>/records/<vm>.jsonl`, one whole snapshot (VM row and NIC rows)
 * per line, appended inside the same transaction as the database change
 * and before its COMMIT. The last whole line is never behind the database:
 * when `vmnic.db` is lost or emptied, `vmnic restore-records` rebuilds it
 * from these files (docs/state-machine.md, "Lost records"). A log is
 * rewritten to its last line once it grows past a few dozen KiB, and goes
 * with its VM. One that cannot be written (a full disk) is removed rather
 * than left behind, until the VM's next change.
 *
 * Appending through libc (open, write, fstat, close: a few µs each) rather
 * than rewriting a file and renaming it (about 0.4 ms on ext4), or Deno's
 * file ops, keeps the backups off the add path's budget.
 *
 * @module
 */
import { appendNoFollow, unlinkIfExists } from "../sys/files.ts";
import { join } from "../sys/path.ts";
import { StoreError } from "./errors.ts";
import type { NicRecord, VmRecord } from "./types.ts";

/** The backups' dir inside the root dir. */
export const JOURNAL_DIR_NAME = "records";
/** The file of this install's identity inside the backups' dir. */
const INSTALL_FILE = "install.json";
/** A VM's log. */
const SUFFIX = ".jsonl";
/** Format version of a snapshot line. */
const FORMAT = 1;
/** Past this size a log is rewritten to its last snapshot. */
const COMPACT_BYTES = 64 * 1024;

/** One VM's records as backed up. */
export interface VmBackup {
  /** Format version. */
  format: number;
  /** The install the records belong to. */
  installId: string;
  /** The VM row. */
  vm: VmRecord;
  /** Its NIC rows. */
  nics: NicRecord[];
}

const encoder = new TextEncoder();

/** The backups of one root dir. */
export class Journal {
  /** The backups' dir. */
  readonly dir: string;
  #dirMade = false;

  /** Backups under `rootDir/records`. */
  constructor(rootDir: string) {
    this.dir = join(rootDir, JOURNAL_DIR_NAME);
  }

  /** Appends a snapshot of `vmId` (or, with `null`, removes its log). */
  write(vmId: string, backup: VmBackup | null): void {
    const path = join(this.dir, vmId + SUFFIX);
    try {
      if (backup === null) {
        unlinkIfExists(path);
        return;
      }
      this.#ensureDir();
      const line = encoder.encode(JSON.stringify(backup) + "\n");
      const size = appendNoFollow(path, line);
      if (size > BigInt(COMPACT_BYTES)) {
        const tmp = `${path}.${Deno.pid}.tmp`;
        Deno.writeFileSync(tmp, line, { mode: 0o600 });
        Deno.renameSync(tmp, path);
      }
    } catch (err) {
      if (backup === null && err instanceof Deno.errors.NotFound) return;
      throw new StoreError("back up records", path, String(err), {
        cause: err,
      });
    }
  }

  /** Removes the backup of `vmId`, if it can (best effort). */
  drop(vmId: string): void {
    try {
      Deno.removeSync(join(this.dir, vmId + SUFFIX));
    } catch { /* absent, or nothing can be done */ }
  }

  /** Records the install id beside the backups. */
  writeInstall(installId: string): void {
    const path = join(this.dir, INSTALL_FILE);
    try {
      this.#ensureDir();
      const tmp = `${path}.${Deno.pid}.tmp`;
      Deno.writeTextFileSync(
        tmp,
        JSON.stringify({ format: FORMAT, installId }),
        {
          mode: 0o600,
        },
      );
      Deno.renameSync(tmp, path);
    } catch (err) {
      throw new StoreError("back up records", path, String(err), {
        cause: err,
      });
    }
  }

  /** The install id kept beside the backups, or null. */
  installId(): string | null {
    try {
      const v = JSON.parse(
        Deno.readTextFileSync(join(this.dir, INSTALL_FILE)),
      ) as { installId?: unknown };
      return typeof v.installId === "string" ? v.installId : null;
    } catch {
      return null;
    }
  }

  /** VM ids that have a backup. */
  vmIds(): string[] {
    try {
      return [...Deno.readDirSync(this.dir)]
        .filter((e) => e.isFile && e.name.endsWith(SUFFIX))
        .map((e) => e.name.slice(0, -SUFFIX.length))
        .sort();
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return [];
      throw err;
    }
  }

  /**
   * The last whole snapshot of every VM. A torn last line (a crash in the
   * middle of an append, before its transaction could commit) is skipped
   * for the one before it; a log with no whole snapshot (its VM's first
   * change never committed) is skipped.
   */
  readAll(): VmBackup[] {
    return this.vmIds().map((id): VmBackup | null => {
      const path = join(this.dir, id + SUFFIX);
      let lines: string[];
      try {
        lines = Deno.readTextFileSync(path).split("\n");
      } catch (err) {
        throw new StoreError("read record backup", path, String(err), {
          cause: err,
        });
      }
      for (let i = lines.length - 1; i >= 0; i--) {
        if (!lines[i]) continue;
        let v: VmBackup;
        try {
          v = JSON.parse(lines[i]) as VmBackup;
        } catch {
          continue; // torn
        }
        if (
          v?.format === FORMAT && typeof v.installId === "string" &&
          v.vm?.vmId === id && Array.isArray(v.nics)
        ) {
          return v;
        }
      }
      // Nothing whole in it: the VM's first change never committed.
      return null;
    }).filter((b): b is VmBackup => b !== null);
  }

  #ensureDir(): void {
    if (this.#dirMade) return;
    Deno.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.#dirMade = true;
  }
}
