/**
 * Test support for `vmnic serve`: the daemon as its own process (started
 * with a fixture's settings, its log kept, killed by PID at the end), an
 * HTTP/1.1 client over its Unix socket written by hand (status, headers,
 * body; also half-sent requests), `curl --unix-socket`, and a proxy socket
 * that notes every request it forwards to the daemon, so a test can tell
 * that a CLI run really went through the daemon. The socket work happens
 * in processes of its own (`_net.ts`, curl): Deno wants net access for Unix
 * sockets, which the test runner does not have.
 *
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Fixture } from "../provider/_fixture.ts";
import { CLI_MAIN, CLI_PERMISSIONS, REPO_ROOT } from "../support/cli.ts";
import { run } from "../support/harness.ts";
import { parseReply, type RequestResult, type RequestSpec } from "./_net.ts";

/** The environment of a process the tests start: no VMNIC_* settings. */
export function cleanEnv(
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    ...Object.fromEntries(
      Object.entries(Deno.env.toObject()).filter(([k]) =>
        !k.startsWith("VMNIC_")
      ),
    ),
    ...extra,
  };
}

/** How a daemon process ended. */
export interface Exit {
  code: number;
  signal: Deno.Signal | null;
}

/** A `vmnic serve` process. */
export interface DaemonProcess {
  /** Its socket. */
  socket: string;
  /** Its PID. */
  pid: number;
  /** What it wrote on stderr so far (its log). */
  log(): string;
  /** What it wrote on stdout so far. */
  stdout(): string;
  /** Resolves when it has exited. */
  exited: Promise<Exit>;
  /** Sends it a signal (by its PID); nothing when it has exited. */
  signal(sig: Deno.Signal): void;
  /** SIGTERM, then waits for the exit. */
  stop(): Promise<Exit>;
  /** SIGKILL (if alive), then waits for the exit. */
  kill(): Promise<Exit>;
}

/** Options of {@linkcode spawnDaemon}. */
export interface SpawnOptions {
  /** The socket (`--socket`). */
  socket: string;
  /** More arguments of `vmnic serve` (`--pool`, `--wait`, …). */
  args?: string[];
  /** Settings instead of the fixture's flags. */
  flags?: string[];
  /** Extra environment. */
  env?: Record<string, string>;
}

/** Every daemon the tests started and have not seen exit: killed at the end. */
const alive = new Set<DaemonProcess>();

/**
 * Starts `vmnic serve` with the fixture's settings; does not wait for it to
 * listen (see {@linkcode startDaemon}).
 */
export function spawnDaemon(fx: Fixture, opts: SpawnOptions): DaemonProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...CLI_PERMISSIONS,
      CLI_MAIN,
      "serve",
      ...(opts.flags ?? fx.flags),
      `--socket=${opts.socket}`,
      ...(opts.args ?? []),
    ],
    cwd: REPO_ROOT,
    env: cleanEnv(opts.env),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let err = "";
  let out = "";
  const drain = async (
    stream: ReadableStream<Uint8Array>,
    add: (s: string) => void,
  ) => {
    for await (const s of stream.pipeThrough(new TextDecoderStream())) add(s);
  };
  const streams = Promise.all([
    drain(child.stderr, (s) => err += s),
    drain(child.stdout, (s) => out += s),
  ]);
  let done = false;
  const exited = child.status.then(async (s) => {
    done = true;
    await streams;
    return { code: s.code, signal: s.signal };
  });
  const d: DaemonProcess = {
    socket: opts.socket,
    pid: child.pid,
    log: () => err,
    stdout: () => out,
    exited,
    signal(sig) {
      if (done) return;
      try {
        Deno.kill(child.pid, sig);
      } catch { /* exited meanwhile */ }
    },
    async stop() {
      d.signal("SIGTERM");
      return await exited;
    },
    async kill() {
      d.signal("SIGKILL");
      return await exited;
    },
  };
  alive.add(d);
  exited.then(() => alive.delete(d));
  return d;
}

/**
 * Starts `vmnic serve` and waits until it says it listens (and its socket
 * answers); throws with its log when it exits first.
 */
export async function startDaemon(
  fx: Fixture,
  opts: SpawnOptions,
): Promise<DaemonProcess> {
  const d = spawnDaemon(fx, opts);
  let exited: Exit | null = null;
  d.exited.then((e) => exited = e);
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (exited) {
      throw new Error(
        `vmnic serve exited ${
          JSON.stringify(exited)
        } before listening:\n${d.log()}`,
      );
    }
    if (d.log().includes("listening on")) {
      const h = await request(d.socket, "GET", "/v1/health").catch(() => null);
      if (h?.status === 200) return d;
    }
    await sleep(20);
  }
  await d.kill();
  throw new Error(`vmnic serve did not listen within 60 s:\n${d.log()}`);
}

/** Kills (SIGKILL, by PID) every daemon the tests started that still runs. */
export async function killDaemons(): Promise<void> {
  for (const d of [...alive]) await d.kill();
}

/** Sleeps `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** An HTTP answer. */
export interface Reply {
  status: number;
  /** Header names lower-cased. */
  headers: Record<string, string>;
  /** The body as text. */
  text: string;
  /** The body parsed as JSON (undefined when it is not JSON). */
  json: unknown;
  /** How long the request took, as the client saw it. */
  elapsedMs: number;
}

const NET = fileURLToPath(new URL("./_net.ts", import.meta.url));
/** What `_net.ts` runs with: Deno wants net access for Unix sockets. */
const NET_PERMISSIONS = ["--allow-net", "--allow-read", "--allow-write"];

function withJson(r: Omit<Reply, "json">): Reply {
  let json: unknown;
  try {
    json = JSON.parse(r.text);
  } catch { /* not JSON */ }
  return { ...r, json };
}

/**
 * One request over the daemon's socket, written and read by hand (in a
 * process of its own: see `_net.ts`). `json` is serialized as the body;
 * the rest of `opts` sends anything else (raw text, a size, a lying
 * length, chunks).
 */
export async function request(
  socket: string,
  method: string,
  path: string,
  opts: { json?: unknown } & Partial<RequestSpec> = {},
): Promise<Reply> {
  const { json, ...rest } = opts;
  const spec: RequestSpec = {
    socket,
    method,
    path,
    ...(json !== undefined ? { body: JSON.stringify(json) } : {}),
    ...rest,
  };
  const r = await run(Deno.execPath(), [
    "run",
    ...NET_PERMISSIONS,
    NET,
    "request",
    JSON.stringify(spec),
  ]);
  let out: RequestResult | { error: string };
  try {
    out = JSON.parse(r.stdout);
  } catch {
    throw new Error(`_net.ts request failed (${r.code}): ${r.stderr}`);
  }
  if ("error" in out) {
    throw new Error(`${method} ${path}: ${out.error}`);
  }
  return withJson(out);
}

/** What `curl` got. */
export interface CurlReply extends Reply {
  /** curl's exit code. */
  code: number;
  /** curl's stderr. */
  stderr: string;
}

/**
 * `curl --unix-socket socket -X method http://vmnic<path>` with a JSON body
 * when given; status, headers and body from `curl -i`.
 */
export async function curl(
  socket: string,
  method: string,
  path: string,
  opts: { body?: unknown; args?: string[] } = {},
): Promise<CurlReply> {
  const args = [
    "-sS",
    "-i",
    "--max-time",
    "60",
    "--unix-socket",
    socket,
    "-X",
    method,
    ...(opts.body === undefined ? [] : [
      "-H",
      "content-type: application/json",
      "--data-binary",
      JSON.stringify(opts.body),
    ]),
    ...(opts.args ?? []),
    `http://vmnic${path}`,
  ];
  const start = performance.now();
  const r = await run("curl", args);
  const elapsedMs = performance.now() - start;
  const reply = parseReply(new TextEncoder().encode(r.stdout), true);
  return {
    ...withJson({
      ...(reply ?? { status: 0, headers: {}, text: r.stdout }),
      elapsedMs,
    }),
    code: r.code,
    stderr: r.stderr,
  };
}

/** A socket in front of the daemon's that notes each request line. */
export interface Proxy {
  /** The proxy's socket (give it to the CLI as `--socket`). */
  socket: string;
  /** `METHOD /path?query` of every request forwarded so far, in order. */
  requests(): string[];
  /** Stops it (SIGTERM to its PID) and waits for it. */
  close(): Promise<void>;
}

/**
 * Starts a proxy on `socket` that forwards every connection, byte for byte
 * both ways, to `upstream` (the daemon's socket), noting each request line.
 */
export async function startProxy(
  socket: string,
  upstream: string,
): Promise<Proxy> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...NET_PERMISSIONS, NET, "proxy", socket, upstream],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines: string[] = [];
  const listening = Promise.withResolvers<void>();
  const reading = (async () => {
    let rest = "";
    for await (
      const s of child.stdout.pipeThrough(new TextDecoderStream())
    ) {
      rest += s;
      let nl;
      while ((nl = rest.indexOf("\n")) >= 0) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        if (line === "listening") listening.resolve();
        else lines.push(line);
      }
    }
    listening.reject(new Error("the proxy exited before listening"));
  })();
  await listening.promise;
  let closed = false;
  return {
    socket,
    requests: () => [...lines],
    async close() {
      if (!closed) {
        closed = true;
        try {
          Deno.kill(child.pid, "SIGTERM");
        } catch { /* exited */ }
      }
      await child.status;
      await reading;
    },
  };
}

/** A fresh dir for sockets (mode 0755, root's), removed by the caller. */
export async function socketDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "vmnict-sock-" });
  await Deno.chmod(dir, 0o755);
  return dir;
}

/** `path` under `dir`. */
export function at(dir: string, name: string): string {
  return join(dir, name);
}
