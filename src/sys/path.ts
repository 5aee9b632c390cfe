/**
 * POSIX path helpers: the few `node:path` functions vmnic uses, without
 * `node:path` itself (the first `node:` import of a process costs it about
 * 15-25 ms of start-up, and the CLI starts on every call).
 *
 * @module
 */

/** Joins path segments with `/` and normalizes the result. */
export function join(...parts: string[]): string {
  const joined = parts.filter((p) => p !== "").join("/");
  return joined === "" ? "." : normalize(joined);
}

/** `.`/`..` segments resolved and repeated slashes removed (`/a/./b/../c` → `/a/c`). */
export function normalize(path: string): string {
  const absolute = path.startsWith("/");
  const out: string[] = [];
  for (const seg of path.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (out.length && out.at(-1) !== "..") out.pop();
      else if (!absolute) out.push("..");
      continue;
    }
    out.push(seg);
  }
  const body = out.join("/");
  if (absolute) return "/" + body;
  return body === "" ? "." : body;
}

/** The directory part (`/a/b/c` → `/a/b`, `c` → `.`, `/` → `/`). */
export function dirname(path: string): string {
  if (/^\/+$/.test(path)) return "/";
  const p = path.replace(/\/+$/, "");
  const cut = p.lastIndexOf("/");
  if (cut < 0) return ".";
  if (cut === 0) return "/";
  return p.slice(0, cut);
}

/** The last part (`/a/b/c` → `c`, `/a/b/` → `b`). */
export function basename(path: string): string {
  const p = path.replace(/\/+$/, "");
  return p.slice(p.lastIndexOf("/") + 1);
}

/** An absolute, normalized path: `parts` joined onto the working dir. */
export function resolve(...parts: string[]): string {
  let path = "";
  for (let i = parts.length - 1; i >= 0 && !path.startsWith("/"); i--) {
    if (parts[i]) path = path ? `${parts[i]}/${path}` : parts[i];
  }
  if (!path.startsWith("/")) path = `${Deno.cwd()}/${path}`;
  return normalize(path);
}
