/**
 * `vmnic serve`: one long-lived process that serves the CLI's commands as
 * HTTP/1.1 + JSON on a Unix socket (docs/api.md). It keeps the store open
 * and the conflists loaded (reloaded when the conf dir changes), runs
 * operations on different VMs in parallel and on one VM in order, lets an
 * operation whose client went away finish, and on SIGTERM drains what is in
 * flight before it exits.
 *
 * @module
 */
import { type AnyCommand, errorJson, type RunContext } from "../cli/command.ts";
import { requestTarget } from "../cli/daemon_client.ts";
import type { InDaemon, Progress } from "../cli/run.ts";
import { runCommandLine } from "./cli_route.ts";
import { MAX_BODY_BYTES } from "../cli/forward.ts";
import { onlyQuery } from "../cli/http_input.ts";
import { UsageError } from "../cli/args.ts";
import { CniProvider, type OpenOptions } from "../provider/mod.ts";
import { resolveConfig } from "../provider/config.ts";
import { newTraceparent, parseTraceparent } from "../provider/trace.ts";
import { Metrics, METRICS_CONTENT_TYPE } from "./metrics.ts";
import {
  startWatcher,
  type Watcher,
  type WatcherOptions,
} from "../watcher/watcher.ts";
import type { ProviderConfig } from "../provider/types.ts";
import { closeFd, flock, openNoFollow, rewrite } from "../sys/files.ts";
import { LOCK_EX, LOCK_NB, O_CREAT, O_RDWR } from "../sys/fcntl.ts";
import { dirname, join } from "../sys/path.ts";
import { ensureSecureDir } from "../sys/secure_dir.ts";
import { preferGlobalTimers } from "../sys/timers.ts";
import { VERSION } from "../version.ts";
import {
  loadRoutes,
  matchRoute,
  openApiDocument,
  type Route,
} from "./routes.ts";

/** The default socket (`--socket`, `VMNIC_SOCKET`). */
export { DEFAULT_SOCKET } from "../cli/forward.ts";
/** Largest request body taken, in bytes. */
export { MAX_BODY_BYTES };
/** How long a client may take to send its body. */
export const BODY_TIMEOUT_MS = 10_000;
/** The request header carrying the caller's `--wait`, in milliseconds. */
export const WAIT_HEADER = "vmnic-wait";
/** The request header carrying the CLI's settings, checked against ours. */
export const SETTINGS_HEADER = "vmnic-settings";
/** The file that holds the daemon's lock in the root dir. */
const DAEMON_LOCK = "daemon.lock";

/** Options of {@linkcode startServer}. */
export interface ServeOptions {
  /** The provider's settings. */
  config: ProviderConfig;
  /** The socket path. */
  socket: string;
  /** The group that may connect (mode 0660); none: root only. */
  socketGroup?: string;
  /** Passed to `CniProvider.open` (TS hooks, seams). */
  open?: OpenOptions;
  /** Where the daemon tells what it does (one line each). */
  log?: (line: string) => void;
  /** Also serve `/metrics` over TCP here (`--metrics-listen HOST:PORT`). */
  metricsListen?: { hostname: string; port: number };
  /** The watcher's reactions and timing (`--watch-*`; docs/watcher.md). */
  watch?: WatcherOptions;
}

/** A running daemon. */
export interface Daemon {
  /** The provider it serves. */
  readonly provider: CniProvider;
  /** Requests being served now. */
  readonly inFlight: number;
  /** The watcher (its counters), unless it could not start. */
  readonly watcher?: Watcher;
  /** Stops accepting, waits for what is in flight, closes; idempotent. */
  shutdown(): Promise<void>;
  /** Resolves once it has shut down. */
  readonly finished: Promise<void>;
}

/** Something about the daemon itself that stops it from starting. */
export class ServeError extends Error {
  /** Builds the error. */
  constructor(message: string) {
    super(message);
    this.name = "ServeError";
  }
}

/** Starts the daemon; resolves once it listens. */
export async function startServer(opts: ServeOptions): Promise<Daemon> {
  // A daemon lives long and loads Node's timers anyway: its cancelled
  // deadlines should be freed at once (src/sys/timers.ts).
  preferGlobalTimers();
  const cfg = resolveConfig(opts.config);
  const log = opts.log ?? (() => {});
  const lockFd = lockRootDir(cfg.rootDir);
  let provider: CniProvider | undefined;
  let server: Deno.HttpServer | undefined;
  let kernelWatch: Watcher | undefined;
  let watchError: string | undefined;
  try {
    await clearStaleSocket(opts.socket, opts.socketGroup !== undefined);
    const gid = opts.socketGroup === undefined
      ? undefined
      : groupId(opts.socketGroup);
    provider = await CniProvider.open(cfg, opts.open ?? {});
    const routes = await loadRoutes();
    const openapi = JSON.stringify(openApiDocument(routes), null, 2);
    const since = new Date().toISOString();
    const queues = new VmQueues();
    const watcher = watchConfDir(cfg.cniConfDir, provider, log);
    const metrics = new Metrics(provider);
    const metricsServer = opts.metricsListen
      ? serveMetrics(opts.metricsListen, metrics, log)
      : null;
    // Streams (events --follow) end when the daemon shuts down.
    const streams = new AbortController();
    let inFlight = 0;
    const p = provider;
    const handler = async (req: Request): Promise<Response> => {
      inFlight++;
      try {
        return await handle(req, {
          routes,
          provider: p,
          openapi,
          queues,
          config: opts.config,
          health: () => ({
            ok: true,
            version: VERSION,
            pid: Deno.pid,
            since,
            rootDir: cfg.rootDir,
            netnsPrefix: cfg.netnsPrefix,
            inFlight: inFlight - 1,
            watcher: kernelWatch?.status() ??
              { running: false, ...(watchError ? { error: watchError } : {}) },
          }),
          log,
          streams: streams.signal,
          metrics,
        });
      } finally {
        inFlight--;
      }
    };
    const listening = Promise.withResolvers<void>();
    // Made under another name, given its mode and group, then renamed into
    // place: never reachable with the umask's looser mode.
    const fresh = `${opts.socket}.${Deno.pid}.new`;
    server = Deno.serve({
      transport: "unix",
      path: fresh,
      onListen: () => listening.resolve(),
      onError: (e) => json(500, errorJson(e)),
    }, handler);
    await listening.promise;
    // Root (and the group named) only: the API can do what root can.
    Deno.chmodSync(fresh, 0o660);
    if (gid !== undefined) Deno.chownSync(fresh, 0, gid);
    Deno.renameSync(fresh, opts.socket);
    log(`vmnic serve: listening on ${opts.socket} for root dir ${cfg.rootDir}`);
    // The watcher (docs/watcher.md) first looks at every VM, while the API
    // already serves. It is an addition: a kernel it cannot listen to
    // leaves the API served, and says why (the log, GET /v1/health).
    try {
      kernelWatch = await startWatcher(p, { ...opts.watch, log });
    } catch (e) {
      watchError = e instanceof Error ? e.message : String(e);
      log(`vmnic serve: the watcher did not start: ${watchError}`);
    }
    const watch = kernelWatch;
    const srv = server;
    let closing: Promise<void> | undefined;
    const finished = Promise.withResolvers<void>();
    const daemon: Daemon = {
      provider: p,
      get inFlight() {
        return inFlight;
      },
      watcher: watch,
      shutdown() {
        closing ??= (async () => {
          log(`vmnic serve: draining ${inFlight} request(s)`);
          streams.abort();
          await watch?.stop();
          await srv.shutdown();
          try {
            Deno.removeSync(opts.socket);
          } catch { /* gone already */ }
          await metricsServer?.shutdown();
          metrics.close();
          await queues.idle();
          watcher.close();
          await p.shutdown();
          closeFd(lockFd);
          finished.resolve();
        })();
        return closing;
      },
      finished: finished.promise,
    };
    return daemon;
  } catch (e) {
    await kernelWatch?.stop();
    if (server) await server.shutdown();
    provider?.close();
    closeFd(lockFd);
    throw e;
  }
}

/**
 * `/metrics` alone over TCP at `listen` (`HOST:PORT`), for a Prometheus
 * that does not scrape Unix sockets. Anything else there is 404.
 */
function serveMetrics(
  listen: { hostname: string; port: number },
  metrics: Metrics,
  log: (line: string) => void,
): Deno.HttpServer {
  return Deno.serve({
    hostname: listen.hostname,
    port: listen.port,
    onListen: ({ hostname, port }) =>
      log(`vmnic serve: metrics on http://${hostname}:${port}/metrics`),
  }, async (req) => {
    if (req.method !== "GET" || new URL(req.url).pathname !== "/metrics") {
      return new Response("only GET /metrics here\n", { status: 404 });
    }
    return new Response(await metrics.render(), {
      headers: { "content-type": METRICS_CONTENT_TYPE },
    });
  });
}

/** One daemon per root dir: a lock held for the daemon's life. */
function lockRootDir(rootDir: string): number {
  ensureSecureDir(rootDir);
  const path = join(rootDir, DAEMON_LOCK);
  const fd = openNoFollow(path, O_RDWR | O_CREAT, 0o600, "lock root dir");
  if (!flock(fd, LOCK_EX | LOCK_NB, path)) {
    let who = "";
    try {
      who = ` (${Deno.readTextFileSync(path).trim()})`;
    } catch { /* unreadable: said without it */ }
    closeFd(fd);
    throw new ServeError(
      `another vmnic serve runs for root dir ${rootDir}${who}: one daemon per install`,
    );
  }
  rewrite(fd, `pid ${Deno.pid} since ${new Date().toISOString()}\n`, path);
  return fd;
}

/**
 * A socket file left by a daemon that died is replaced; one another daemon
 * answers on, or anything that is not a socket, is refused.
 */
async function clearStaleSocket(
  socket: string,
  forGroup: boolean,
): Promise<void> {
  // A group that may use the socket must be able to reach it: the dir
  // gets search permission (0711: no listing), never write.
  const dir = ensureSecureDir(dirname(socket), forGroup ? 0o711 : 0o700);
  if (forGroup) {
    const mode = Deno.statSync(dir).mode! & 0o777;
    if ((mode & 0o011) !== 0o011) Deno.chmodSync(dir, mode | 0o011);
  }
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(socket);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  if (!info.isSocket) {
    throw new ServeError(
      `${socket} exists and is not a socket: remove it or choose another --socket`,
    );
  }
  try {
    const conn = await Deno.connect({ transport: "unix", path: socket });
    conn.close();
    throw new ServeError(`another vmnic serve answers on ${socket}`);
  } catch (e) {
    if (e instanceof ServeError) throw e;
    // Nobody listens: a stale socket file.
    Deno.removeSync(socket);
  }
}

/** The gid of a group name (or a number), from /etc/group. */
function groupId(group: string): number {
  if (/^\d+$/.test(group)) return Number(group);
  for (const line of Deno.readTextFileSync("/etc/group").split("\n")) {
    const [name, , gid] = line.split(":");
    if (name === group && /^\d+$/.test(gid ?? "")) return Number(gid);
  }
  throw new ServeError(`--socket-group: no group ${JSON.stringify(group)}`);
}

/** Reloads the conflists when the conf dir changes. */
function watchConfDir(
  dir: string,
  provider: CniProvider,
  log: (line: string) => void,
): { close(): void } {
  let watcher: Deno.FsWatcher;
  try {
    watcher = Deno.watchFs(dir, { recursive: false });
  } catch {
    // No conf dir (the embedded network serves): loaded on each open.
    return { close() {} };
  }
  (async () => {
    try {
      for await (const _ of watcher) {
        provider.reloadNetworks();
        log(`vmnic serve: ${dir} changed: conflists reloaded`);
      }
    } catch { /* closed */ }
  })();
  return { close: () => watcher.close() };
}

/** Operations on one VM in order, different VMs in parallel. */
class VmQueues {
  readonly #tails = new Map<string, Promise<unknown>>();

  /** Runs `fn` after every earlier operation of `vmId`. */
  run<T>(vmId: string, fn: () => Promise<T>): Promise<T> {
    const before = this.#tails.get(vmId) ?? Promise.resolve();
    const mine = before.catch(() => {}).then(fn);
    const tail = mine.catch(() => {});
    this.#tails.set(vmId, tail);
    tail.then(() => {
      if (this.#tails.get(vmId) === tail) this.#tails.delete(vmId);
    });
    return mine;
  }

  /** Resolves once nothing is queued. */
  async idle(): Promise<void> {
    while (this.#tails.size) await Promise.all(this.#tails.values());
  }
}

interface HandleCtx {
  routes: Route[];
  provider: CniProvider;
  openapi: string;
  queues: VmQueues;
  config: ProviderConfig;
  health: () => Record<string, unknown>;
  log: (line: string) => void;
  /** Aborted when the daemon shuts down: streams end. */
  streams: AbortSignal;
  /** What `GET /metrics` shows. */
  metrics: Metrics;
}

/**
 * Serves one request. `progress`: where the run's progress goes (a line
 * run for `POST /v1/cli` prints it as the CLI would); none for the API.
 */
async function handle(
  req: Request,
  h: HandleCtx,
  progress: Progress = () => {},
): Promise<Response> {
  const url = new URL(req.url);
  const match = matchRoute(h.routes, req.method, url.pathname);
  if (match === null) {
    return json(404, {
      error: {
        type: "UsageError",
        message:
          `no route ${req.method} ${url.pathname} (GET /v1/openapi.json lists them)`,
      },
    });
  }
  if ("allowed" in match) {
    return json(405, {
      error: {
        type: "UsageError",
        message: `${req.method} is not allowed on ${url.pathname}; allowed: ${
          match.allowed.join(", ")
        }`,
      },
    }, { allow: match.allowed.join(", ") });
  }
  const { route, params } = match;
  if (route.own) {
    switch (route.own.name) {
      case "openapi":
        return new Response(h.openapi, {
          headers: { "content-type": "application/json" },
        });
      case "health":
        return json(200, h.health());
      case "pool":
        return json(200, await h.provider.poolStatus());
      case "metrics":
        return new Response(await h.metrics.render(), {
          headers: { "content-type": METRICS_CONTENT_TYPE },
        });
      case "cli":
        return await serveCommandLine(req, h);
    }
  }
  const command = route.command!;
  let traceparent: string | undefined;
  try {
    checkSettings(req, h.config);
    const body = await readBody(req);
    const query = Object.fromEntries(url.searchParams);
    const http = command.http!;
    const input = http.input
      ? http.input({ params, query, body })
      : takesNothing(command.name, query);
    // The caller's trace context, or one started here; answered in the
    // `traceparent` response header (docs/events.md).
    const given = req.headers.get("traceparent");
    if (given !== null) parseTraceparent(given, command.name);
    traceparent = given ?? newTraceparent();
    let provider = h.provider.withTrace(traceparent);
    const wait = req.headers.get(WAIT_HEADER);
    if (wait !== null) {
      // The caller's --wait for a busy VM, as in process.
      if (!/^\d{1,9}$/.test(wait)) {
        throw new UsageError(
          `the ${WAIT_HEADER} header must be milliseconds, got ${
            JSON.stringify(wait)
          }`,
        );
      }
      provider = provider.withLockWait(Number(wait));
    }
    const traced = { traceparent };
    if (command.follow?.when(input)) {
      return streamItems(
        command.follow.items(input, provider, anySignal(req.signal, h.streams)),
        traced,
      );
    }
    const ctx: RunContext = {
      provider,
      config: h.config,
      io: {
        out: () => {},
        err: (s) => h.log(s),
        env: () => undefined,
        envNames: () => [],
        readStdin: () => Promise.resolve(""),
        readFile: (path) =>
          Promise.reject(new Error(`the daemon reads no file (${path})`)),
        localTime: (text) => Date.parse(text),
      },
      // Progress of one client's run is no news for the daemon's log.
      progress,
    };
    // The client's disconnect does not abort an operation half-way: it
    // runs to its end; only the answer is lost.
    const vm = params.vm;
    const run = () => command.run(input, ctx);
    const out = vm && mutates(command)
      ? await h.queues.run(vm, run)
      : await run();
    return json(200, out, traced);
  } catch (e) {
    const body = errorJson(e, traceparent);
    return json(
      statusOf(e),
      body,
      traceparent ? { traceparent } : {},
    );
  }
}

/**
 * `POST /v1/cli`: the command line of the body, run by the CLI's `main`,
 * whose requests are served here as if they came over the socket.
 */
async function serveCommandLine(req: Request, h: HandleCtx): Promise<Response> {
  const inside: InDaemon = {
    async call(method, pathTemplate, parts, headers, progress) {
      const res = await handle(
        new Request(`http://vmnic${requestTarget(pathTemplate, parts)}`, {
          method,
          headers: parts.body === undefined
            ? headers
            : { ...headers, "content-type": "application/json" },
          body: parts.body === undefined
            ? undefined
            : JSON.stringify(parts.body),
        }),
        h,
        progress,
      );
      return { status: res.status, body: await res.json() };
    },
  };
  let body: unknown;
  try {
    body = await readBody(req);
  } catch (e) {
    return json(statusOf(e), errorJson(e));
  }
  try {
    return json(200, await runCommandLine(body, inside));
  } catch (e) {
    // A body that is no command line is a 400; anything else the run let
    // out is the daemon's failure: never a 404, which clients take for a
    // daemon without this route (and run the line themselves).
    return json(e instanceof UsageError ? 400 : 500, errorJson(e));
  }
}

/** The input of a route that takes nothing: `{}`, and no query. */
function takesNothing(name: string, query: Record<string, string>): object {
  onlyQuery(name, "*", query, []);
  return {};
}

/** Commands that change a VM: one at a time per VM. */
function mutates(command: AnyCommand): boolean {
  return command.http!.method !== "GET";
}

/**
 * A CLI that names settings (`--root-dir`, …) must be talking to the daemon
 * of that install: a mismatch is refused, never served from another one.
 */
function checkSettings(req: Request, ours: ProviderConfig): void {
  const header = req.headers.get(SETTINGS_HEADER);
  if (!header) return;
  let theirs: Record<string, unknown>;
  try {
    theirs = JSON.parse(header);
  } catch {
    throw new UsageError(`the ${SETTINGS_HEADER} header is not JSON`);
  }
  const mine = resolveConfig(ours) as unknown as Record<string, unknown>;
  const want = resolveConfig(theirs as ProviderConfig) as unknown as Record<
    string,
    unknown
  >;
  for (const key of Object.keys(theirs)) {
    if (JSON.stringify(mine[key]) !== JSON.stringify(want[key])) {
      throw new SettingsMismatch(key, mine[key], want[key]);
    }
  }
}

/** The CLI's settings are not this daemon's (409). */
class SettingsMismatch extends Error {
  constructor(key: string, mine: unknown, theirs: unknown) {
    super(
      `this vmnic serve has ${key} ${JSON.stringify(mine)}, not ${
        JSON.stringify(theirs)
      }: it serves another install (use --no-daemon, or its --socket)`,
    );
    this.name = "SettingsMismatch";
  }
}

/** The JSON body, size- and time-limited; undefined when empty. */
async function readBody(req: Request): Promise<unknown> {
  if (!req.body) return undefined;
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > MAX_BODY_BYTES) throw new TooLarge();
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const slow = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new SlowClient()), BODY_TIMEOUT_MS);
  });
  try {
    for (;;) {
      const { done, value } = await Promise.race([reader.read(), slow]);
      if (done) break;
      size += value.length;
      if (size > MAX_BODY_BYTES) throw new TooLarge();
      chunks.push(value);
    }
  } finally {
    clearTimeout(timer);
    reader.releaseLock();
  }
  if (!size) return undefined;
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new BadJson((e as Error).message);
  }
}

class TooLarge extends Error {
  constructor() {
    super(`the request body is larger than ${MAX_BODY_BYTES} bytes`);
    this.name = "UsageError";
  }
}

class SlowClient extends Error {
  constructor() {
    super(`the request body did not arrive within ${BODY_TIMEOUT_MS} ms`);
    this.name = "UsageError";
  }
}

class BadJson extends Error {
  constructor(detail: string) {
    super(`the request body is not JSON: ${detail}`);
    this.name = "UsageError";
  }
}

/** Newline-delimited JSON of `items`, one per line, as they come. */
function streamItems(
  items: AsyncIterable<unknown>,
  headers: Record<string, string>,
): Response {
  const encoder = new TextEncoder();
  const it = items[Symbol.asyncIterator]();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const next = await it.next();
        if (next.done) controller.close();
        else {controller.enqueue(
            encoder.encode(JSON.stringify(next.value) + "\n"),
          );}
      } catch (e) {
        controller.error(e);
      }
    },
    async cancel() {
      await it.return?.();
    },
  });
  return new Response(body, {
    status: 200,
    headers: { "content-type": "application/x-ndjson", ...headers },
  });
}

/** Aborted when any of `signals` is. */
function anySignal(...signals: AbortSignal[]): AbortSignal {
  return AbortSignal.any(signals);
}

/** The HTTP status of an error, by its class (docs/api.md). */
export function statusOf(e: unknown): number {
  if (e instanceof TooLarge) return 413;
  if (e instanceof SlowClient) return 408;
  if (e instanceof SettingsMismatch) return 409;
  const name = (e as Error)?.name;
  if (name === "ConflictError" || name === "VmBusyError") return 409;
  if (name === "NotFoundError") return 404;
  if (
    e instanceof UsageError || e instanceof BadJson ||
    name === "InvalidInputError"
  ) {
    return 400;
  }
  return 500;
}

function json(
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify(body, null, 2), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}
