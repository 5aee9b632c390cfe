/**
 * The CLI's side of `vmnic serve`: one HTTP/1.1 request over the daemon's
 * Unix socket, written and read by hand (`fetch` over a Unix socket would
 * load more than the CLI's whole cold path).
 *
 * @module
 */
import type { HttpParts } from "./command.ts";
import {
  concat,
  CRLF,
  CRLFCRLF,
  indexOf,
  parseResponse,
  readToEnd,
  writeAll,
} from "./forward.ts";

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
  const conn = await connect(socket);
  try {
    await writeAll(conn, requestBytes(method, pathTemplate, parts, headers));
    return parseReply(await readToEnd(conn));
  } finally {
    try {
      conn.close();
    } catch { /* closed by the peer */ }
  }
}

/**
 * Sends `method path` and hands each line of a streamed answer
 * (newline-delimited JSON) to `onItem` as it arrives, until the daemon
 * ends the stream or `signal` aborts. A non-200 answer is returned whole.
 * Throws {@linkcode NoDaemon} when nothing listens on `socket`.
 */
export async function streamDaemon(
  socket: string,
  method: string,
  pathTemplate: string,
  parts: HttpParts,
  headers: Record<string, string>,
  onItem: (item: unknown) => void,
  signal: AbortSignal,
): Promise<DaemonReply> {
  const conn = await connect(socket);
  const close = () => {
    try {
      conn.close();
    } catch { /* closed already */ }
  };
  signal.addEventListener("abort", close, { once: true });
  try {
    await writeAll(conn, requestBytes(method, pathTemplate, parts, headers));
    const buf = new Uint8Array(64 * 1024);
    let head: Uint8Array<ArrayBuffer> = new Uint8Array(0);
    let end = -1;
    while (end < 0) {
      const n = await readOrEnd(conn, buf);
      if (n === null) throw new Error("vmnic serve: truncated reply");
      head = concat([head, buf.subarray(0, n)]);
      end = indexOf(head, CRLFCRLF, 0);
    }
    const text = new TextDecoder().decode(head.subarray(0, end));
    const status = Number(text.split("\r\n")[0].split(" ")[1]);
    if (status !== 200) {
      const rest = await readToEnd(conn).catch(() => new Uint8Array());
      return parseReply(concat([head, rest]));
    }
    const chunked = /\r\ntransfer-encoding:\s*chunked/i.test(text);
    const lines = new LineSplitter(onItem);
    const body = chunked ? new Dechunker((b) => lines.push(b)) : null;
    const feed = (b: Uint8Array) => body ? body.push(b) : lines.push(b);
    feed(head.subarray(end + 4));
    for (;;) {
      const n = await readOrEnd(conn, buf);
      if (n === null || body?.done) break;
      feed(buf.slice(0, n));
    }
    return { status, body: undefined };
  } finally {
    signal.removeEventListener("abort", close);
    close();
  }
}

async function connect(socket: string): Promise<Deno.UnixConn> {
  try {
    return await Deno.connect({ transport: "unix", path: socket });
  } catch (e) {
    if (
      e instanceof Deno.errors.NotFound ||
      e instanceof Deno.errors.ConnectionRefused
    ) {
      throw new NoDaemon(socket, e);
    }
    throw e;
  }
}

/** A route's path template filled in with `parts`: the path and query. */
export function requestTarget(pathTemplate: string, parts: HttpParts): string {
  const path = pathTemplate.replace(
    /\{(\w+)\}/g,
    (_, name: string) => encodeURIComponent(parts.params[name] ?? ""),
  );
  const query = new URLSearchParams(parts.query).toString();
  return query ? `${path}?${query}` : path;
}

function requestBytes(
  method: string,
  pathTemplate: string,
  parts: HttpParts,
  headers: Record<string, string>,
): Uint8Array {
  const body = parts.body === undefined
    ? new Uint8Array()
    : encoder.encode(JSON.stringify(parts.body));
  const head = [
    `${method} ${requestTarget(pathTemplate, parts)} HTTP/1.1`,
    "host: vmnic",
    "connection: close",
    ...(parts.body === undefined ? [] : ["content-type: application/json"]),
    `content-length: ${body.length}`,
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    "",
    "",
  ].join("\r\n");
  return concat([encoder.encode(head), body]);
}

/** A read that takes a connection closed under it (an abort) as the end. */
async function readOrEnd(
  conn: Deno.Conn,
  buf: Uint8Array,
): Promise<number | null> {
  try {
    return await conn.read(buf);
  } catch (e) {
    if (
      e instanceof Deno.errors.BadResource ||
      e instanceof Deno.errors.Interrupted
    ) {
      return null;
    }
    throw e;
  }
}

/** Newline-delimited JSON, fed in pieces: each whole line parsed and handed on. */
class LineSplitter {
  #rest = "";
  readonly #decoder = new TextDecoder();
  constructor(readonly onItem: (item: unknown) => void) {}
  push(b: Uint8Array): void {
    const text = this.#rest + this.#decoder.decode(b, { stream: true });
    const lines = text.split("\n");
    this.#rest = lines.pop()!;
    for (const line of lines) if (line.trim()) this.onItem(JSON.parse(line));
  }
}

/** A chunked transfer's body, fed in pieces, handed on as it is decoded. */
class Dechunker {
  #buf: Uint8Array = new Uint8Array(0);
  #left = -1; // bytes of the current chunk still to come; -1: a size line next
  done = false;
  constructor(readonly onData: (b: Uint8Array) => void) {}
  push(b: Uint8Array): void {
    this.#buf = concat([this.#buf, b]);
    for (;;) {
      if (this.#left < 0) {
        const nl = indexOf(this.#buf, CRLF, 0);
        if (nl < 0) return;
        const size = parseInt(
          new TextDecoder().decode(this.#buf.subarray(0, nl)),
          16,
        );
        this.#buf = this.#buf.subarray(nl + 2);
        if (!size) {
          this.done = true;
          return;
        }
        this.#left = size;
      }
      // The chunk's data, then its CRLF.
      if (this.#buf.length < this.#left + 2) {
        if (this.#buf.length > 0 && this.#buf.length <= this.#left) {
          this.onData(this.#buf);
          this.#left -= this.#buf.length;
          this.#buf = new Uint8Array(0);
        }
        return;
      }
      this.onData(this.#buf.subarray(0, this.#left));
      this.#buf = this.#buf.subarray(this.#left + 2);
      this.#left = -1;
    }
  }
}

/** Status and JSON body of a whole HTTP/1.1 response. */
function parseReply(bytes: Uint8Array): DaemonReply {
  let reply;
  try {
    reply = parseResponse(bytes);
  } catch (e) {
    throw new Error(`vmnic serve: ${(e as Error).message}`);
  }
  return {
    status: reply.status,
    body: reply.body ? JSON.parse(reply.body) : undefined,
  };
}
