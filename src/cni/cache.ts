/**
 * The attachment cache: what an ADD used and returned, kept so DEL can run
 * later with the same config and `prevResult` even after the conflist on
 * disk changed (libcni's `results/<net>-<cid>-<if>` files).
 *
 * @module
 */
import { join } from "../sys/path.ts";
import { CniCacheError } from "./errors.ts";
import type { CniResult } from "./result.ts";
import { toCniResult } from "./result.ts";

/** Which attachment: one interface of one container on one network. */
export interface AttachmentKey {
  /** The network (list) name. */
  network: string;
  /** The container (VM) id. */
  containerId: string;
  /** The interface name in the container. */
  ifName: string;
}

/** What is kept about an attachment. */
export interface CachedAttachment {
  /** The exact network list JSON text the ADD used. */
  config: string;
  /** The ADD's result in 1.0 form. */
  result: CniResult | null;
  /** The CNI_ARGS pairs the ADD was given. */
  args?: [string, string][];
  /** The capability args the ADD was given. */
  capabilityArgs?: Record<string, unknown>;
}

/**
 * Storage for attachments. The runtime only needs get/put/delete; `list`
 * (optional) lets GC find stale attachments of a network.
 */
export interface AttachmentCache {
  /** The entry for `key`, or `null` when there is none. */
  get(key: AttachmentKey): Promise<CachedAttachment | null>;
  /** Stores (replaces) the entry for `key`. */
  put(key: AttachmentKey, value: CachedAttachment): Promise<void>;
  /** Removes the entry for `key`; no error when there is none. */
  delete(key: AttachmentKey): Promise<void>;
  /** Keys of every entry of `network`. */
  list?(network: string): Promise<AttachmentKey[]>;
}

const FILE_KIND = "vmnicCniCacheV1";

interface CacheFile extends CachedAttachment {
  kind: typeof FILE_KIND;
  network: string;
  containerId: string;
  ifName: string;
}

/**
 * An {@linkcode AttachmentCache} keeping one JSON file per attachment in
 * `dir` (created 0700 on first write; files 0600, written atomically).
 */
export class FileAttachmentCache implements AttachmentCache {
  /** The directory holding the files. */
  readonly dir: string;

  /** A cache in `dir`; nothing is created until the first `put`. */
  constructor(dir: string) {
    this.dir = dir;
  }

  /** The file an attachment is kept in. */
  pathOf(key: AttachmentKey): string {
    return join(
      this.dir,
      `${enc(key.network)}-${enc(key.containerId)}-${enc(key.ifName)}.json`,
    );
  }

  async get(key: AttachmentKey): Promise<CachedAttachment | null> {
    const path = this.pathOf(key);
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      throw new CniCacheError("get", path, errText(e), { cause: e });
    }
    return decodeEntry(text, path).entry;
  }

  async put(key: AttachmentKey, value: CachedAttachment): Promise<void> {
    const path = this.pathOf(key);
    const file: CacheFile = {
      kind: FILE_KIND,
      network: key.network,
      containerId: key.containerId,
      ifName: key.ifName,
      config: value.config,
      result: value.result,
      ...(value.args ? { args: value.args } : {}),
      ...(value.capabilityArgs ? { capabilityArgs: value.capabilityArgs } : {}),
    };
    const tmp = `${path}.${crypto.randomUUID()}.tmp`;
    try {
      await Deno.mkdir(this.dir, { recursive: true, mode: 0o700 });
      await Deno.writeTextFile(tmp, JSON.stringify(file), { mode: 0o600 });
      await Deno.rename(tmp, path);
    } catch (e) {
      await Deno.remove(tmp).catch(() => {});
      throw new CniCacheError("put", path, errText(e), { cause: e });
    }
  }

  async delete(key: AttachmentKey): Promise<void> {
    const path = this.pathOf(key);
    try {
      await Deno.remove(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      throw new CniCacheError("delete", path, errText(e), { cause: e });
    }
  }

  async list(network: string): Promise<AttachmentKey[]> {
    const keys: AttachmentKey[] = [];
    const prefix = `${enc(network)}-`;
    try {
      for await (const entry of Deno.readDir(this.dir)) {
        if (!entry.isFile || !entry.name.startsWith(prefix)) continue;
        if (!entry.name.endsWith(".json")) continue;
        const path = join(this.dir, entry.name);
        const { key } = decodeEntry(await Deno.readTextFile(path), path);
        if (key.network === network) keys.push(key);
      }
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return [];
      if (e instanceof CniCacheError) throw e;
      throw new CniCacheError("list", this.dir, errText(e), { cause: e });
    }
    return keys;
  }
}

function decodeEntry(
  text: string,
  path: string,
): { key: AttachmentKey; entry: CachedAttachment } {
  let f: Partial<CacheFile>;
  try {
    f = JSON.parse(text);
  } catch (e) {
    throw new CniCacheError("get", path, "not valid JSON", { cause: e });
  }
  if (
    f?.kind !== FILE_KIND || typeof f.config !== "string" ||
    typeof f.network !== "string" || typeof f.containerId !== "string" ||
    typeof f.ifName !== "string"
  ) {
    throw new CniCacheError("get", path, `not a ${FILE_KIND} cache entry`);
  }
  const entry: CachedAttachment = {
    config: f.config,
    result: f.result == null ? null : toCniResult(f.result, path),
  };
  if (f.args) entry.args = f.args;
  if (f.capabilityArgs) entry.capabilityArgs = f.capabilityArgs;
  return {
    key: { network: f.network, containerId: f.containerId, ifName: f.ifName },
    entry,
  };
}

/**
 * Makes a key part safe and unambiguous as a file-name part: `-` (the
 * separator), `/`, `.` and everything outside [A-Za-z0-9_] is %-escaped.
 */
function enc(part: string): string {
  return part.replace(
    /[^A-Za-z0-9_]/gu,
    (c) =>
      Array.from(
        new TextEncoder().encode(c),
        (b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`,
      ).join(""),
  );
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
