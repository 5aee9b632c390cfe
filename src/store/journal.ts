/**
 * Record backups: for each VM, a JSON copy of its records in
 * `<rootDir>/records/<vm>.json`, written inside the same transaction as the
 * database change and before its COMMIT. A backup is therefore never behind
 * the database: when `vmnic.db` is lost or emptied, `vmnic restore-records`
 * rebuilds it from these files (docs/state-machine.md, "Lost records").
 *
 * @module
 */
import { join } from "node:path";
import { StoreError } from "./errors.ts";
import type { NicRecord, VmRecord } from "./types.ts";

/** The backups' dir inside the root dir. */
export const JOURNAL_DIR_NAME = "records";
/** The file of this install's identity inside the backups' dir. */
const INSTALL_FILE = "install.json";
/** Format version of a backup file. */
const FORMAT = 1;

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

/** The backups of one root dir. */
export class Journal {
  /** The backups' dir. */
  readonly dir: string;

  /** Backups under `rootDir/records`. */
  constructor(rootDir: string) {
    this.dir = join(rootDir, JOURNAL_DIR_NAME);
  }

  /** Writes (or, with `null`, removes) the backup of `vmId`. */
  write(vmId: string, backup: VmBackup | null): void {
    const path = join(this.dir, `${vmId}.json`);
    try {
      if (backup === null) {
        Deno.removeSync(path);
        return;
      }
      this.#ensureDir();
      atomicWrite(path, JSON.stringify(backup));
    } catch (err) {
      if (backup === null && err instanceof Deno.errors.NotFound) return;
      throw new StoreError("back up records", path, String(err), {
        cause: err,
      });
    }
  }

  /** Records the install id beside the backups. */
  writeInstall(installId: string): void {
    const path = join(this.dir, INSTALL_FILE);
    try {
      this.#ensureDir();
      atomicWrite(path, JSON.stringify({ format: FORMAT, installId }));
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
        .filter((e) => e.isFile && e.name.endsWith(".json"))
        .map((e) => e.name.slice(0, -".json".length))
        .filter((name) => name !== "install")
        .sort();
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return [];
      throw err;
    }
  }

  /** Reads every backup; a file that cannot be read or parsed is an error. */
  readAll(): VmBackup[] {
    return this.vmIds().map((id) => {
      const path = join(this.dir, `${id}.json`);
      let v: VmBackup;
      try {
        v = JSON.parse(Deno.readTextFileSync(path)) as VmBackup;
      } catch (err) {
        throw new StoreError("read record backup", path, String(err), {
          cause: err,
        });
      }
      if (
        v?.format !== FORMAT || typeof v.installId !== "string" ||
        v.vm?.vmId !== id || !Array.isArray(v.nics)
      ) {
        throw new StoreError(
          "read record backup",
          path,
          `not a vmnic record backup (format ${FORMAT})`,
        );
      }
      return v;
    });
  }

  #ensureDir(): void {
    Deno.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }
}

/** Write to a temp file beside `path`, then rename: never a torn file. */
function atomicWrite(path: string, text: string): void {
  const tmp = `${path}.${Deno.pid}.tmp`;
  Deno.writeTextFileSync(tmp, text, { mode: 0o600 });
  Deno.renameSync(tmp, path);
}
