/**
 * The rule for every dir vmnic trusts (hooks, records, locks): it and each
 * ancestor are owned by root (or by vmnic's own user) and writable by no
 * one else, so nobody else can swap what vmnic reads or plant a symlink
 * where it writes. A sticky ancestor such as /tmp is fine: others cannot
 * rename what root owns there.
 *
 * @module
 */
import { dirname, resolve } from "./path.ts";

/** A dir (or file) that others could change under vmnic. */
export class InsecurePathError extends Error {
  /** The path as the caller named it (or the offending ancestor). */
  readonly path: string;
  /** What is wrong, e.g. `is group-writable (mode 0775)`. */
  readonly reason: string;

  /** `path` is unsafe for `reason`. */
  constructor(path: string, reason: string) {
    super(`${path} ${reason}`);
    this.name = "InsecurePathError";
    this.path = path;
    this.reason = reason;
  }
}

/** Owners vmnic trusts: root, and the user vmnic runs as. */
function trustedOwners(): number[] {
  const uid = Deno.uid();
  return uid === null || uid === 0 ? [0] : [0, uid];
}

/**
 * Throws {@linkcode InsecurePathError} unless the dir at `path` and every
 * ancestor are owned by a trusted user and not group- or world-writable
 * (sticky ancestors excepted). When `path` is a symlink, the dir holding
 * the link must be safe too. A missing `path` is not checked here.
 */
export function checkDirChain(path: string, shown = path): void {
  const real = Deno.realPathSync(path);
  const info = Deno.statSync(real);
  if (!info.isDirectory) {
    throw new InsecurePathError(shown, "is not a directory");
  }
  walk(real, shown);
  const abs = resolve(path);
  if (real !== abs) walk(Deno.realPathSync(dirname(abs)), dirname(abs));
}

/**
 * Creates `path` (mode 0700, parents as needed) when missing, then checks
 * it as {@linkcode checkDirChain} does. Returns the path.
 */
export function ensureSecureDir(path: string, mode = 0o700): string {
  try {
    Deno.mkdirSync(path, { recursive: true, mode });
  } catch (err) {
    if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
  }
  checkDirChain(path);
  return path;
}

/** Checks an existing regular file's owner and mode (not writable by others). */
export function checkSecureFile(path: string, info: Deno.FileInfo): void {
  ownerAndMode(path, info, false);
}

function walk(realDir: string, shown: string): void {
  let current = realDir;
  for (;;) {
    ownerAndMode(
      current === realDir ? shown : current,
      Deno.statSync(current),
      current !== realDir,
    );
    const parent = dirname(current);
    if (parent === current) return;
    current = parent;
  }
}

function ownerAndMode(
  shown: string,
  info: Deno.FileInfo,
  stickyAllowed: boolean,
): void {
  const mode = info.mode! & 0o7777;
  if (!trustedOwners().includes(info.uid!)) {
    throw new InsecurePathError(shown, `is owned by uid ${info.uid}`);
  }
  if (stickyAllowed && (mode & 0o1000) !== 0) return;
  if (mode & 0o002) {
    throw new InsecurePathError(
      shown,
      `is world-writable (mode ${octal(mode)})`,
    );
  }
  if (mode & 0o020) {
    throw new InsecurePathError(
      shown,
      `is group-writable (mode ${octal(mode)})`,
    );
  }
}

function octal(mode: number): string {
  return "0" + mode.toString(8).padStart(3, "0");
}
