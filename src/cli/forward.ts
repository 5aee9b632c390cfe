/**
 * The CLI's fast path: a command line handed whole to `vmnic serve`
 * (`POST /v1/cli`), which parses, runs and prints it as the CLI would and
 * answers with the lines to print and the exit code. A process that goes
 * this way loads this module and nothing else of the CLI (docs/api.md,
 * "The CLI's own route").
 *
 * @module
 */
import { VERSION } from "../version.ts";
import { misspeltSettings, SETTING_VARIABLES } from "./setting_variables.ts";

/** Where `vmnic serve` listens unless told otherwise (`--socket`). */
export const DEFAULT_SOCKET = "/run/vmnic/vmnic.sock";

/** The daemon's route for whole command lines. */
export const CLI_ROUTE = "/v1/cli";

/** The largest request body the daemon takes, in bytes (413 above it). */
export const MAX_BODY_BYTES = 1024 * 1024;

/**
 * The commands a daemon runs for a client: those with a route that open a
 * provider (tests/cli/forward_test.ts holds this list to the command
 * table). Others (`version`, `doctor`, `serve`, `restore-records`) start
 * here at once.
 */
export const DAEMON_COMMANDS: ReadonlySet<string> = new Set([
  "add",
  "delete",
  "events",
  "find",
  "gc",
  "guest-config",
  "hooks",
  "hv-args",
  "inspect",
  "list",
  "networks",
  "policy",
  "prepare",
  "quiesce",
  "recover",
  "remove",
  "unquiesce",
  "verify",
  "vms",
]);

/** The body of `POST /v1/cli`. */
export interface CliRequest {
  /** The command line, without the program's name. */
  argv: string[];
  /** The variables a command line reads: `VMNIC_*` and `TRACEPARENT`. */
  env: Record<string, string>;
  /** The client's version: a daemon of another one lets it run itself. */
  version: string;
}

/** One line the run printed, on stdout (1) or stderr (2). */
export interface CliLine {
  /** 1: stdout, 2: stderr. */
  fd: 1 | 2;
  /** The line, without its newline. */
  text: string;
}

/** The answer of `POST /v1/cli`. */
export type CliReply =
  | {
    /** The run's exit code (docs/cli.md). */
    exitCode: number;
    /** What it printed, in order. */
    output: CliLine[];
  }
  | {
    /** Why the client must run this line itself (nothing was done). */
    runLocally: string;
  };

/** Whether the variable `name` is one a command line reads. */
export function isCliEnv(name: string): boolean {
  return name.startsWith("VMNIC_") || name === "TRACEPARENT";
}

/**
 * The socket to hand `argv` to, or null when it runs in this process: a
 * command the daemon does not run, or `--no-daemon`. The command is the
 * first word that is not an option: a line that starts with a global option
 * taking a value (`--root-dir DIR add …`) runs in this process, which asks
 * the daemon by the command's own route if one answers.
 */
export function socketFor(
  argv: readonly string[],
  env: (name: string) => string | undefined,
): string | null {
  const line = beforeEnd(argv);
  if (daemonCommandOf(argv) === null) return null;
  if (line.includes("--no-daemon")) return null;
  let socket: string | undefined;
  for (const [i, a] of line.entries()) {
    if (a === "--socket") socket = line[i + 1];
    else if (a.startsWith("--socket=")) socket = a.slice("--socket=".length);
  }
  // An empty or missing value is the full CLI's to refuse.
  if (socket === "") return null;
  return socket ?? (env(SETTING_VARIABLES.socket) || DEFAULT_SOCKET);
}

/**
 * Runs `argv` in the daemon when one answers on its socket: writes what it
 * printed and returns its exit code. Null when the line runs in this
 * process: no daemon, a command it does not run, or a daemon that says so
 * or cannot take the line (it then did nothing).
 */
export async function forward(argv: string[]): Promise<number | null> {
  const socket = socketFor(argv, (k) => Deno.env.get(k));
  if (socket === null) return null;
  const env = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) => isCliEnv(k)),
  );
  // A misspelt setting: the full CLI refuses the line; no daemon sees it.
  if (misspeltSettings(Object.keys(env)).some((m) => m.sure)) return null;
  const request: CliRequest = { argv, env, version: VERSION };
  const body = encoder.encode(JSON.stringify(request));
  // More than the daemon takes (a delete of thousands of VMs): run here.
  if (body.length > MAX_BODY_BYTES) return null;
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path: socket });
  } catch {
    // No daemon, or one this user may not reach: the full CLI decides,
    // and says why when it must.
    return null;
  }
  // Interrupted, the daemon finishes the operation (a client going away
  // does not stop it): the first signal waits for its answer, as the
  // in-process CLI waits for its rollback; a second one leaves without it.
  let signalled = 0;
  const onSignal = () => {
    if (++signalled === 1) {
      write(
        2,
        "vmnic: the daemon finishes the operation; its answer follows " +
          "(signal again to leave without it)",
      );
    } else {
      write(2, "vmnic: left; the daemon finishes the operation");
      Deno.exit(130);
    }
  };
  const signals = ["SIGINT", "SIGTERM"] as const;
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  const json = jsonRequested(argv);
  let answer: { status: number; body: string };
  try {
    await writeAll(conn, httpHead(body.length));
    await writeAll(conn, body);
    answer = parseResponse(await readToEnd(conn));
  } catch (e) {
    return failed(
      json,
      `vmnic serve on ${socket} did not answer: ${
        e instanceof Error ? e.message : e
      }`,
    );
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
    try {
      conn.close();
    } catch { /* closed by the peer */ }
  }
  // Nothing was done: a daemon without this route (an older one) serves
  // the line by the command's own route instead; one that cannot take
  // this body leaves it to this process.
  if ([404, 405, 413].includes(answer.status)) return null;
  let reply: unknown;
  try {
    reply = JSON.parse(answer.body);
  } catch { /* reported below */ }
  const shaped = typeof reply === "object" && reply !== null
    ? reply as Record<string, unknown>
    : {};
  if (answer.status === 200 && "runLocally" in shaped) return null;
  if (answer.status !== 200 || !isAnswer(shaped)) {
    const message = (shaped as { error?: { message?: string } }).error
      ?.message ?? answer.body.slice(0, 200);
    return failed(
      json,
      `vmnic serve on ${socket} answered ${answer.status}: ${message}`,
    );
  }
  const done = reply as Extract<CliReply, { exitCode: number }>;
  for (const line of done.output) write(line.fd, line.text);
  return done.exitCode;
}

/** Whether `v` is a run's answer: an exit code and lines for 1 and 2. */
function isAnswer(v: Record<string, unknown>): boolean {
  const code = v.exitCode;
  return typeof code === "number" && Number.isInteger(code) && code >= 0 &&
    code <= 255 && Array.isArray(v.output) &&
    v.output.every((l) =>
      typeof l === "object" && l !== null &&
      (l.fd === 1 || l.fd === 2) && typeof l.text === "string"
    );
}

/** The CLI's own rule: `--json` before `--` makes stderr JSON too. */
export function jsonRequested(argv: readonly string[]): boolean {
  return beforeEnd(argv).includes("--json");
}

/**
 * The line's command when it is one the daemon runs (its first word that
 * is not an option, before `--`), else null.
 */
export function daemonCommandOf(argv: readonly string[]): string | null {
  const command = beforeEnd(argv).find((a) => !a.startsWith("-"));
  return command !== undefined && DAEMON_COMMANDS.has(command) ? command : null;
}

/** The words before `--` (the options' part of the line). */
function beforeEnd(argv: readonly string[]): readonly string[] {
  const end = argv.indexOf("--");
  return end < 0 ? argv : argv.slice(0, end);
}

/** Says `message` on stderr (the CLI's error JSON with `--json`); exit 1. */
function failed(json: boolean, message: string): number {
  write(
    2,
    json
      ? JSON.stringify({ error: { type: "DaemonError", message } })
      : `vmnic: ${message}`,
  );
  return 1;
}

const encoder = new TextEncoder();

function httpHead(length: number): Uint8Array {
  return encoder.encode(
    `POST ${CLI_ROUTE} HTTP/1.1\r\nhost: vmnic\r\nconnection: close\r\n` +
      `content-type: application/json\r\ncontent-length: ${length}\r\n\r\n`,
  );
}

/** Writes all of `bytes` to `conn`. */
export async function writeAll(
  conn: Deno.Conn,
  bytes: Uint8Array,
): Promise<void> {
  for (let at = 0; at < bytes.length;) {
    at += await conn.write(bytes.subarray(at));
  }
}

/** Everything `conn` sends until it closes. */
export async function readToEnd(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(64 * 1024);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  return concat(chunks);
}

/** An HTTP/1.1 response, read to its end: its status and its body's text. */
export function parseResponse(bytes: Uint8Array): {
  status: number;
  body: string;
} {
  const end = indexOf(bytes, CRLFCRLF, 0);
  if (end < 0) throw new Error("truncated reply");
  const head = decoder.decode(bytes.subarray(0, end));
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1]);
  if (!status) throw new Error(`not an HTTP reply: ${head.slice(0, 40)}`);
  const body = bytes.subarray(end + 4);
  return {
    status,
    body: decoder.decode(
      /\r\ntransfer-encoding:\s*chunked/i.test(head) ? dechunk(body) : body,
    ),
  };
}

const decoder = new TextDecoder();

/** CR LF, and the blank line that ends an HTTP head. */
export const CRLF = Uint8Array.of(13, 10);
/** The end of an HTTP head. */
export const CRLFCRLF = Uint8Array.of(13, 10, 13, 10);

/** Where `needle` starts in `hay` at or after `from`; -1: nowhere. */
export function indexOf(
  hay: Uint8Array,
  needle: Uint8Array,
  from: number,
): number {
  outer: for (let i = from; i <= hay.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (hay[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}

/** A whole chunked body, decoded. */
function dechunk(body: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let at = 0;;) {
    const nl = indexOf(body, CRLF, at);
    if (nl < 0) throw new Error("truncated reply");
    const size = parseInt(decoder.decode(body.subarray(at, nl)), 16);
    if (!(size > 0)) break;
    parts.push(body.subarray(nl + 2, nl + 2 + size));
    at = nl + 2 + size + 2;
  }
  return concat(parts);
}

/** `parts` one after another, in a new buffer. */
export function concat(parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((a, c) => a + c.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, at), at += p.length;
  return out;
}

/** Streams whose reader went away: written no more (as `console.log` does). */
const closed = new Set<number>();

function write(fd: 1 | 2, line: string): void {
  if (closed.has(fd)) return;
  const bytes = encoder.encode(line + "\n");
  const stream = fd === 1 ? Deno.stdout : Deno.stderr;
  try {
    for (let at = 0; at < bytes.length;) {
      at += stream.writeSync(bytes.subarray(at));
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.BrokenPipe)) throw e;
    closed.add(fd);
  }
}
