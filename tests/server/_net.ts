/**
 * The Unix-socket side of the daemon tests, run as its own process: the
 * test runner has no `--allow-net`, which Deno wants for Unix sockets.
 *
 * - `_net.ts request '<json spec>'`: one HTTP/1.1 request written by hand
 *   (any body, a declared length that lies, a body sent in part and then
 *   held back), the reply read by hand; prints `{ status, headers, text,
 *   elapsedMs }` or `{ error }` as JSON.
 * - `_net.ts proxy <socket> <upstream>`: listens on `socket` and forwards
 *   each connection byte for byte to `upstream`, printing each request's
 *   line (`METHOD /path`) on stdout as it passes; prints `listening` first.
 *
 * @module
 */

/** What `request` sends. */
export interface RequestSpec {
  socket: string;
  method: string;
  path: string;
  /** More header lines. */
  headers?: Record<string, string>;
  /** The body, as text. */
  body?: string;
  /** A body of `size` bytes of `x` instead (for size limits). */
  size?: number;
  /** The content-length to declare; default: the body's; null: none. */
  declaredLength?: number | null;
  /** Send the body chunked (transfer-encoding), without a length. */
  chunked?: boolean;
  /** Give up on the reply after this long (default 60 s). */
  timeoutMs?: number;
}

/** What `request` prints. */
export interface RequestResult {
  status: number;
  /** Header names lower-cased. */
  headers: Record<string, string>;
  text: string;
  /** From the first byte sent to the whole reply. */
  elapsedMs: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

async function request(spec: RequestSpec): Promise<RequestResult> {
  const conn = await Deno.connect({ transport: "unix", path: spec.socket });
  const start = performance.now();
  try {
    const body = spec.size !== undefined
      ? new Uint8Array(spec.size).fill(0x78)
      : spec.body !== undefined
      ? enc.encode(spec.body)
      : undefined;
    const length = spec.declaredLength === undefined
      ? body?.length
      : spec.declaredLength ?? undefined;
    const head = [
      `${spec.method} ${spec.path} HTTP/1.1`,
      "host: vmnic",
      "connection: close",
      ...(body ? ["content-type: application/json"] : []),
      ...(spec.chunked
        ? ["transfer-encoding: chunked"]
        : length !== undefined
        ? [`content-length: ${length}`]
        : []),
      ...Object.entries(spec.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
      "",
      "",
    ].join("\r\n");
    await writeAll(conn, enc.encode(head));
    // The body goes while the reply is read: a server that answers before
    // it has read all of it (413) must be heard, not blocked on.
    const sending = (async () => {
      if (!body) return;
      if (spec.chunked) {
        for (let at = 0; at < body.length; at += 65536) {
          const part = body.subarray(at, at + 65536);
          await writeAll(conn, enc.encode(`${part.length.toString(16)}\r\n`));
          await writeAll(conn, part);
          await writeAll(conn, enc.encode("\r\n"));
        }
        await writeAll(conn, enc.encode("0\r\n\r\n"));
      } else await writeAll(conn, body);
    })().catch(() => {});
    const reply = await readReply(conn, spec.timeoutMs ?? 60_000);
    void sending;
    return { ...reply, elapsedMs: performance.now() - start };
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

/**
 * Reads one HTTP/1.1 response: up to its declared length, its last chunk,
 * or the end of the connection.
 */
async function readReply(
  conn: Deno.Conn,
  timeoutMs: number,
): Promise<Omit<RequestResult, "elapsedMs">> {
  let buf = new Uint8Array(0);
  const chunk = new Uint8Array(64 * 1024);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((r) => {
    timer = setTimeout(() => r("timeout"), timeoutMs);
  });
  try {
    for (;;) {
      const parsed = parseReply(buf, false);
      if (parsed) return parsed;
      const n = await Promise.race([conn.read(chunk), timeout]);
      if (n === "timeout") {
        throw new Error(
          `no whole reply within ${timeoutMs} ms: ${
            JSON.stringify(dec.decode(buf))
          }`,
        );
      }
      if (n === null) {
        const last = parseReply(buf, true);
        if (last) return last;
        throw new Error(
          `the connection ended before a whole reply: ${
            JSON.stringify(dec.decode(buf))
          }`,
        );
      }
      const next = new Uint8Array(buf.length + n);
      next.set(buf);
      next.set(chunk.subarray(0, n), buf.length);
      buf = next;
    }
  } finally {
    clearTimeout(timer);
  }
}

/** A whole response in `buf`, or null while it is incomplete. */
export function parseReply(
  buf: Uint8Array,
  ended: boolean,
): Omit<RequestResult, "elapsedMs"> | null {
  let at = 0;
  for (;;) {
    const text = dec.decode(buf.subarray(at));
    const end = text.indexOf("\r\n\r\n");
    if (end < 0) return null;
    const [statusLine, ...lines] = text.slice(0, end).split("\r\n");
    const status = Number(statusLine.split(" ")[1]);
    const headBytes = enc.encode(text.slice(0, end + 4)).length;
    if (status === 100) {
      // curl's `Expect: 100-continue`: the real answer follows.
      at += headBytes;
      continue;
    }
    const headers: Record<string, string> = {};
    for (const l of lines) {
      const i = l.indexOf(":");
      headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    const rest = buf.subarray(at + headBytes);
    let body: string;
    if (headers["content-length"] !== undefined) {
      const len = Number(headers["content-length"]);
      if (rest.length < len) return null;
      body = dec.decode(rest.subarray(0, len));
    } else if (/chunked/i.test(headers["transfer-encoding"] ?? "")) {
      const out = dechunk(rest);
      if (out === null) {
        if (!ended) return null;
        body = dec.decode(rest);
      } else body = out;
    } else if (ended) {
      body = dec.decode(rest);
    } else return null;
    return { status, headers, text: body };
  }
}

/** A chunked body, or null until its last chunk has come. */
function dechunk(b: Uint8Array): string | null {
  const parts: Uint8Array[] = [];
  let at = 0;
  for (;;) {
    let nl = -1;
    for (let i = at; i + 1 < b.length; i++) {
      if (b[i] === 13 && b[i + 1] === 10) {
        nl = i;
        break;
      }
    }
    if (nl < 0) return null;
    const size = parseInt(dec.decode(b.subarray(at, nl)), 16);
    const start = nl + 2;
    if (size === 0) break;
    if (b.length < start + size + 2) return null;
    parts.push(b.subarray(start, start + size));
    at = start + size + 2;
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return dec.decode(out);
}

/** Forwards connections on `socket` to `upstream`, printing request lines. */
async function proxy(socket: string, upstream: string): Promise<void> {
  const listener = Deno.listen({ transport: "unix", path: socket });
  const stop = () => {
    try {
      listener.close();
    } catch { /* closed */ }
  };
  Deno.addSignalListener("SIGTERM", stop);
  console.log("listening");
  const serve = async (client: Deno.UnixConn) => {
    let server: Deno.UnixConn;
    try {
      server = await Deno.connect({ transport: "unix", path: upstream });
    } catch {
      client.close();
      return;
    }
    const buf = new Uint8Array(64 * 1024);
    const sbuf = new Uint8Array(64 * 1024);
    let head = "";
    let noted = false;
    const up = (async () => {
      try {
        for (;;) {
          const n = await client.read(buf);
          if (n === null) break;
          if (!noted) {
            head += dec.decode(buf.subarray(0, n));
            const nl = head.indexOf("\r\n");
            if (nl >= 0) {
              console.log(head.slice(0, nl).replace(/ HTTP\/1\.1$/, ""));
              noted = true;
            }
          }
          await writeAll(server, buf.subarray(0, n));
        }
        await server.closeWrite();
      } catch { /* either side closed */ }
    })();
    try {
      for (;;) {
        const n = await server.read(sbuf);
        if (n === null) break;
        await writeAll(client, sbuf.subarray(0, n));
      }
    } catch { /* either side closed */ }
    for (const c of [client, server]) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await up;
  };
  const open = new Set<Promise<void>>();
  try {
    for await (const c of listener) {
      const p = serve(c);
      open.add(p);
      p.then(() => open.delete(p));
    }
  } catch { /* closed */ }
  await Promise.all(open);
  await Deno.remove(socket).catch(() => {});
}

if (import.meta.main) {
  const [mode, ...args] = Deno.args;
  if (mode === "request") {
    try {
      console.log(JSON.stringify(await request(JSON.parse(args[0]))));
    } catch (e) {
      console.log(JSON.stringify({ error: String(e) }));
    }
  } else if (mode === "proxy") {
    await proxy(args[0], args[1]);
  } else {
    console.error("usage: _net.ts request SPEC | proxy SOCKET UPSTREAM");
    Deno.exit(2);
  }
}
