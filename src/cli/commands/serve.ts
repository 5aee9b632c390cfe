/**
 * `vmnic serve [--socket PATH] [--socket-group GROUP]`: the daemon
 * (docs/api.md). Runs until SIGTERM or SIGINT; the first drains what is in
 * flight, a second also rolls back what has not finished.
 *
 * @module
 */
import { int, str, strs, UsageError } from "../args.ts";
import { defineCommand } from "../command.ts";

/** `HOST:PORT` (`[v6]:PORT` too) of --metrics-listen. */
function parseListen(
  text: string | undefined,
): { hostname: string; port: number } | undefined {
  if (text === undefined) return undefined;
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) {
    throw new UsageError(
      `invalid --metrics-listen ${JSON.stringify(text)}: expected HOST:PORT ` +
        `(127.0.0.1:9464, [::1]:9464), port 1–65535`,
      "serve",
    );
  }
  return { hostname: m[1] ?? m[2], port };
}

/** A watcher reaction (`off`, `report`, `repair`) of a --watch-* flag. */
function reaction(
  text: string | undefined,
  flag: string,
): "off" | "report" | "repair" | undefined {
  if (text === undefined) return undefined;
  if (text === "off" || text === "report" || text === "repair") return text;
  throw new UsageError(
    `invalid --${flag} ${JSON.stringify(text)}: off, report or repair`,
    "serve",
  );
}

export default defineCommand({
  name: "serve",
  usage:
    "vmnic serve [--socket PATH] [--socket-group GROUP] [--pool NETWORK=COUNT[:QUEUES]]... [--metrics-listen HOST:PORT] [--watch-carrier|--watch-netns|--watch-host off|report|repair] [--watch-settle MS]",
  positionals: [0, 0],
  options: {
    "socket-group": {
      type: "string",
      value: "GROUP",
      help: "a group whose members may use the API (socket mode 0660)",
    },
    pool: {
      type: "string",
      multiple: true,
      value: "NETWORK=COUNT[:QUEUES]",
      help: "keep COUNT pre-wired NIC slots of NETWORK (QUEUES queue pairs, " +
        "default 1) for one-NIC adds to take (repeatable; docs/pool.md)",
    },
    "watch-carrier": {
      type: "string",
      value: "off|report|repair",
      help: "a TAP losing its carrier (its hypervisor stopped): repair " +
        "quiesces the VM once none of its TAPs has one, and unquiesces it " +
        "when one comes back (default repair; docs/watcher.md)",
    },
    "watch-netns": {
      type: "string",
      value: "off|report|repair",
      help: "a VM's netns, TAP, veth or redirect gone: repair runs recover " +
        "(default report)",
    },
    "watch-host": {
      type: "string",
      value: "off|report|repair",
      help: "a host veth off its bridge, or the bridge gone: repair runs " +
        "recover (default report)",
    },
    "watch-settle": {
      type: "string",
      value: "MS",
      help: "how long the watcher lets a VM settle after a change before " +
        "it acts (default 500)",
    },
    "metrics-listen": {
      type: "string",
      value: "HOST:PORT",
      help: "also serve GET /metrics over TCP there (it is always on the " +
        "socket); e.g. 127.0.0.1:9464",
    },
  },
  details: [
    "Serves every command as HTTP/1.1 + JSON on a Unix socket (GET",
    "/v1/openapi.json lists the routes). The CLI uses it when it answers.",
    "One daemon per socket and per root dir. SIGTERM drains in-flight",
    "operations, then exits; a second SIGTERM rolls back what is unfinished.",
    "A watcher reacts to what breaks under running VMs (docs/watcher.md).",
  ].join("\n"),
  provider: "none",
  async parse(p, io) {
    const { parsePoolSpec } = await import("../../provider/pool.ts");
    return {
      socket: str(p, "socket") ?? (io.env("VMNIC_SOCKET") || undefined),
      socketGroup: str(p, "socket-group"),
      pool: strs(p, "pool").map(parsePoolSpec),
      metricsListen: parseListen(str(p, "metrics-listen")),
      watch: {
        carrier: reaction(str(p, "watch-carrier"), "watch-carrier"),
        netns: reaction(str(p, "watch-netns"), "watch-netns"),
        host: reaction(str(p, "watch-host"), "watch-host"),
        settleMs: int(p, "watch-settle", 0, 60_000),
      },
    };
  },
  async run(i, { config, io }) {
    const server = await import("../../server/server.ts");
    const { startServer, DEFAULT_SOCKET } = server;
    const { tsHooks } = await import("../../../hooks/registry.ts");
    const hard = new AbortController();
    const daemon = await startServer({
      config,
      socket: i.socket ?? DEFAULT_SOCKET,
      socketGroup: i.socketGroup,
      open: { tsHooks, signal: hard.signal, pool: i.pool },
      log: (line) => io.err(line),
      metricsListen: i.metricsListen,
      watch: i.watch,
    });
    let signals = 0;
    const onSignal = (sig: Deno.Signal) => () => {
      if (++signals > 1) hard.abort(sig);
      void daemon.shutdown();
    };
    const handlers = (["SIGTERM", "SIGINT"] as const).map((s) =>
      [s, onSignal(s)] as const
    );
    for (const [s, fn] of handlers) Deno.addSignalListener(s, fn);
    try {
      await daemon.finished;
    } finally {
      for (const [s, fn] of handlers) Deno.removeSignalListener(s, fn);
    }
    return { stopped: true, socket: i.socket ?? DEFAULT_SOCKET };
  },
  human: (r) => `vmnic serve: stopped (${r.socket})`,
});
