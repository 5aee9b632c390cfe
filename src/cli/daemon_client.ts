/**
 * The CLI's side of `vmnic serve`: one HTTP/1.1 request over the daemon's
 * Unix socket, written and read by hand (`fetch` over a Unix socket would
 * load more than the CLI's whole cold path).
 *
 * @module
 */
import type { HttpParts } from "./command.ts";

/** The daemon's answer. */
export interface DaemonReply {
  /** HTTP status. */
  status: number;
  /** The JSON body. */
  body: unknown;
}

/** No daemon listens on the socket (absent, or refused). */
export class NoDaemon extends Error {
  /** Builds the error. */
  constructor(socket: string, cause: unknown) {
    super(`no vmnic serve on ${socket}`, { cause });
    this.name = "NoDaemon";
  }
}

const encoder = new TextEncoder();

/**
 * Sends `method path` with `parts` to the daemon on `socket`; throws
 * {@linkcode NoDaemon} when nothing listens there.
 */
export async function callDaemon(
  socket: string,
  method: string,
  pathTemplate: string,
  parts: HttpParts,
  headers: Record<string, string> = {},
): Promise<DaemonReply> {
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path: socket });
  } catch (e) {
    if (
      e instanceof Deno.errors.NotFound ||
      e instanceof Deno.errors.ConnectionRefused
    ) {
      throw new NoDaemon(socket, e);
    }
    throw e;
  }
  try {
    const path = pathTemplate.replace(
      /\{(\w+)\}/g,
      (_, name: string) => encodeURIComponent(parts.params[name] ?? ""),
    );
    const query = new URLSearchParams(parts.query).toString();
    const body = parts.body === undefined
      ? new Uint8Array()
      : encoder.encode(JSON.stringify(parts.body));
    const head = [
      `${method} ${path}${query ? `?${query}` : ""} HTTP/1.1`,
      "host: vmnic",
      "connection: close",
      ...(parts.body === undefined ? [] : ["content-type: application/json"]),
      `content-length: ${body.length}`,
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
      "",
      "",
    ].join("\r\n");
    await writeAll(conn, encoder.encode(head));
    if (body.length) await writeAll(conn, body);
    return parseReply(await readAll(conn));
  } finally {
    try {
      conn.close();
    } catch { /* closed by the peer */ }
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const buf = new Uint8Array(64 * 1024);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
    size += n;
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Status and JSON body of a whole HTTP/1.1 response. */
function parseReply(bytes: Uint8Array): DaemonReply {
  const end = indexOf(bytes, CRLFCRLF, 0);
  if (end < 0) throw new Error("vmnic serve: truncated reply");
  const decoder = new TextDecoder();
  const [statusLine, ...headerLines] = decoder.decode(bytes.subarray(0, end))
    .split("\r\n");
  const status = Number(statusLine.split(" ")[1]);
  let body = bytes.subarray(end + 4);
  if (headerLines.some((l) => /^transfer-encoding:\s*chunked/i.test(l))) {
    body = dechunk(body);
  }
  const text = decoder.decode(body);
  return { status, body: text ? JSON.parse(text) : undefined };
}

const CRLF = Uint8Array.of(13, 10);
const CRLFCRLF = Uint8Array.of(13, 10, 13, 10);

/** The body of a chunked transfer, byte for byte. */
function dechunk(b: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  let at = 0;
  for (;;) {
    const nl = indexOf(b, CRLF, at);
    if (nl < 0) break;
    const size = parseInt(new TextDecoder().decode(b.subarray(at, nl)), 16);
    if (!size) break;
    parts.push(b.subarray(nl + 2, nl + 2 + size));
    at = nl + 2 + size + 2;
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function indexOf(hay: Uint8Array, needle: Uint8Array, from: number): number {
  outer: for (let i = from; i <= hay.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (hay[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}
