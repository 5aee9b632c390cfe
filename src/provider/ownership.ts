/**
 * What makes an install's state its own (docs/state-machine.md,
 * "Ownership"): a claim on its netns prefix that no other root dir can take
 * silently, a tag in every netns it makes, and the refusal to start from an
 * empty database while its state is still on the host.
 *
 * @module
 */
import { dirname, join, resolve } from "../sys/path.ts";
import type { Kernel } from "../wiring/kernel.ts";
import { DB_FILE_NAME } from "../store/store.ts";
import { Journal } from "../store/journal.ts";
import { ensureSecureDir } from "../sys/secure_dir.ts";
import type { ResolvedConfig } from "./config.ts";
import { netnsTag } from "../wiring/nic.ts";
import { installOfTag } from "./context.ts";
import { ConflictError, RecordsLostError } from "./errors.ts";

/** What a prefix claim file holds. */
export interface PrefixClaim {
  /** The owning install's root dir (real path). */
  rootDir: string;
  /** Its install id when it claimed. */
  installId: string;
  /** ISO 8601 time of the claim. */
  claimedAt: string;
}

const CLAIM_SUFFIX = ".json";

/**
 * Where the claim on `prefix` in `netnsDir` lives: beside the netns dir
 * (`/var/run/vmnic-claims/` for the default), seen by every install that
 * makes netns there, whatever its root and run dirs.
 */
export function claimPath(netnsDir: string, prefix: string): string {
  const dir = resolve(netnsDir);
  return join(
    dirname(dir),
    "vmnic-claims",
    `${dir.split("/").pop()}.${prefix}${CLAIM_SUFFIX}`,
  );
}

/**
 * Claims the netns prefix for this install, or confirms the claim is ours.
 * Throws {@linkcode ConflictError} when another root dir holds it. An empty
 * prefix makes no claim (and vmnic's gc then touches no netns by name).
 */
export function claimPrefix(
  op: string,
  cfg: ResolvedConfig,
  installId: string,
): void {
  if (!cfg.netnsPrefix) return;
  const path = claimPath(cfg.netnsDir, cfg.netnsPrefix);
  const rootDir = realRootDir(cfg.rootDir);
  const mine: PrefixClaim = {
    rootDir,
    installId,
    claimedAt: new Date().toISOString(),
  };
  for (let attempt = 0; attempt < 3; attempt++) {
    const held = readClaim(path);
    if (held === "absent") {
      checkNoOverlap(op, cfg, rootDir);
      ensureSecureDir(dirname(path));
      // Written aside, then linked into place: a concurrent reader sees no
      // claim or a whole one, and only one of two racing claims wins.
      const tmp = `${path}.${Deno.pid}.${attempt}.tmp`;
      Deno.writeTextFileSync(tmp, JSON.stringify(mine), { mode: 0o600 });
      try {
        Deno.linkSync(tmp, path);
        return;
      } catch (err) {
        if (err instanceof Deno.errors.AlreadyExists) continue; // raced
        throw err;
      } finally {
        Deno.removeSync(tmp);
      }
    }
    if (held !== "unreadable" && held.rootDir === rootDir) {
      if (held.installId !== installId) {
        // Same root dir, new database (restored or re-made): ours still.
        const tmp = `${path}.${Deno.pid}.tmp`;
        Deno.writeTextFileSync(tmp, JSON.stringify(mine), { mode: 0o600 });
        Deno.renameSync(tmp, path);
      }
      return;
    }
    throw claimConflict(op, cfg, held, path);
  }
}

/**
 * Refuses a prefix that starts another install's prefix, or that another's
 * starts ("vm-" and "vm-a"): each would list the other's netns as its own.
 */
function checkNoOverlap(
  op: string,
  cfg: ResolvedConfig,
  rootDir: string,
): void {
  const mine = claimPath(cfg.netnsDir, cfg.netnsPrefix);
  const dir = dirname(mine);
  const lead = `${resolve(cfg.netnsDir).split("/").pop()}.`;
  let names: string[];
  try {
    names = [...Deno.readDirSync(dir)].map((e) => e.name);
  } catch {
    return; // no claims yet
  }
  for (const name of names) {
    if (!name.startsWith(lead) || !name.endsWith(CLAIM_SUFFIX)) continue;
    const other = name.slice(lead.length, -CLAIM_SUFFIX.length);
    if (other === cfg.netnsPrefix) continue;
    if (
      !other.startsWith(cfg.netnsPrefix) && !cfg.netnsPrefix.startsWith(other)
    ) continue;
    const held = readClaim(join(dir, name));
    if (
      held === "absent" || (held !== "unreadable" && held.rootDir === rootDir)
    ) {
      continue;
    }
    const owner = held === "unreadable"
      ? "an install whose claim cannot be read"
      : `the vmnic install at ${held.rootDir}`;
    throw new ConflictError(
      op,
      cfg.netnsPrefix,
      `netns prefix ${JSON.stringify(cfg.netnsPrefix)} overlaps prefix ${
        JSON.stringify(other)
      } of ${owner} in ${cfg.netnsDir}: each would take the other's netns ` +
        `for its own. Use a prefix that is not the start of the other, nor starts with it`,
    );
  }
}

function claimConflict(
  op: string,
  cfg: ResolvedConfig,
  held: PrefixClaim | "unreadable",
  path: string,
): ConflictError {
  const owner = held === "unreadable"
    ? "an install whose claim cannot be read"
    : `the vmnic install at ${held.rootDir} (install ${held.installId}, since ${held.claimedAt})`;
  const gone = held !== "unreadable" &&
    !exists(join(held.rootDir, DB_FILE_NAME));
  return new ConflictError(
    op,
    cfg.netnsPrefix,
    `netns prefix ${
      JSON.stringify(cfg.netnsPrefix)
    } in ${cfg.netnsDir} belongs to ${owner}: two installs on one prefix ` +
      `would take each other's netns. Use another --netns-prefix` +
      (gone
        ? `, or, since that install's database is gone, remove ${path} to take the prefix over`
        : `, or remove ${path} once that install is retired`),
  );
}

/**
 * Throws {@linkcode ConflictError} when another root dir holds the claim on
 * the prefix (read only: claims are made by the operations that make netns).
 */
export function checkPrefixClaim(op: string, cfg: ResolvedConfig): void {
  if (!cfg.netnsPrefix) return;
  const path = claimPath(cfg.netnsDir, cfg.netnsPrefix);
  const held = readClaim(path);
  if (held === "absent") return;
  if (held !== "unreadable" && held.rootDir === realRootDir(cfg.rootDir)) {
    return;
  }
  throw claimConflict(op, cfg, held, path);
}

/** The claim on the prefix, if any (for `doctor` and the lost-records check). */
export function prefixClaim(cfg: ResolvedConfig): PrefixClaim | null {
  if (!cfg.netnsPrefix) return null;
  const held = readClaim(claimPath(cfg.netnsDir, cfg.netnsPrefix));
  return typeof held === "object" ? held : null;
}

/**
 * The id this root dir's install had before its database was lost: from the
 * record backups' directory, else from its claim on the prefix. Null when
 * neither is there.
 */
export function previousInstallId(
  cfg: ResolvedConfig,
  journalInstallId: string | null,
): string | null {
  if (journalInstallId) return journalInstallId;
  const claim = prefixClaim(cfg);
  return claim?.rootDir === realRootDir(cfg.rootDir) ? claim.installId : null;
}

/**
 * Refuses to open an empty or missing database while this install's state
 * is on the host: record backups, netns carrying its prefix, or a prefix
 * claim naming its root dir. Called before the database is created.
 */
export function checkRecordsNotLost(
  op: string,
  cfg: ResolvedConfig,
  kernel: Kernel,
): void {
  checkPrefixClaim(op, cfg);
  const journal = new Journal(cfg.rootDir);
  const backups = journal.vmIds();
  const previous = previousInstallId(cfg, journal.installId());
  // Only netns an install of vmnic tagged count (this one's, when its id is
  // known): a netns someone else named with the prefix is not our state.
  const netns = cfg.netnsPrefix
    ? kernel.listNetns(cfg.netnsDir).filter((n) => {
      if (!n.startsWith(cfg.netnsPrefix)) return false;
      const owner = tagOwner(kernel, join(cfg.netnsDir, n));
      return owner !== null && (previous === null || owner === previous);
    })
    : [];
  const claim = prefixClaim(cfg);
  const claimed = claim?.rootDir === realRootDir(cfg.rootDir);
  if (!backups.length && !netns.length && !claimed) return;
  const db = join(cfg.rootDir, DB_FILE_NAME);
  const seen: string[] = [];
  if (netns.length) {
    seen.push(
      `${netns.length} netns with prefix ${JSON.stringify(cfg.netnsPrefix)} (${
        sample(netns.map((n) => n.slice(cfg.netnsPrefix.length)))
      })`,
    );
  }
  if (backups.length) {
    seen.push(
      `${backups.length} record backup(s) in ${journal.dir} (${
        sample(backups)
      })`,
    );
  }
  if (claimed && !netns.length && !backups.length) {
    seen.push(
      `the claim on the prefix (${claimPath(cfg.netnsDir, cfg.netnsPrefix)})`,
    );
  }
  const way = backups.length
    ? "Run `vmnic restore-records` to rebuild the database from the backups, or put back vmnic.db from your own backup."
    : netns.length
    ? "Put back vmnic.db from a backup; or give those VMs up with `vmnic gc --include-unknown --active ''`, which removes their netns (without records their CNI attachments cannot be released: IPAM leases stay)."
    : `Nothing of it is left but the claim: remove ${
      claimPath(cfg.netnsDir, cfg.netnsPrefix)
    } to start afresh.`;
  throw new RecordsLostError(
    op,
    db,
    `the record database is missing or empty, but this install has state on ` +
      `the host: ${
        seen.join("; ")
      }. vmnic refuses to take that for "no VMs". ` +
      way,
  );
}

/** The install id a netns is tagged with, or null (untagged, unreadable). */
function tagOwner(kernel: Kernel, path: string): string | null {
  try {
    return installOfTag(kernel.inNetns(path, (s) => netnsTag(s.conn)));
  } catch {
    return null;
  }
}

function sample(names: string[]): string {
  return names.length > 5
    ? `${names.slice(0, 5).join(", ")}, …`
    : names.join(", ");
}

function realRootDir(rootDir: string): string {
  try {
    return Deno.realPathSync(rootDir);
  } catch {
    return resolve(rootDir);
  }
}

function readClaim(path: string): PrefixClaim | "absent" | "unreadable" {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return "absent";
    return "unreadable";
  }
  try {
    const v = JSON.parse(text) as Partial<PrefixClaim>;
    if (
      typeof v.rootDir === "string" && typeof v.installId === "string" &&
      typeof v.claimedAt === "string"
    ) {
      return v as PrefixClaim;
    }
  } catch { /* below */ }
  return "unreadable";
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
