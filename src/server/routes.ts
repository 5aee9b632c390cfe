/**
 * The API's routes, made from the CLI's command table: each command with an
 * `http` route becomes one (docs/api.md). Also the OpenAPI 3.1 document of
 * them all, and matching a request's method and path to a route.
 *
 * @module
 */
import type { AnyCommand, JsonSchema } from "../cli/command.ts";
import { errorBody } from "../cli/schemas.ts";
import { COMMANDS } from "../cli/table.ts";
import { VERSION } from "../version.ts";

/** One route: a command, or one of the daemon's own. */
export interface Route {
  /** GET, POST or DELETE. */
  method: string;
  /** The path template (`/v1/vms/{vm}/nics`). */
  path: string;
  /** Its segments, `{name}` for parameters. */
  segments: string[];
  /** The command it runs; none for the daemon's own routes. */
  command?: AnyCommand;
  /** The daemon's own routes: their summary and response schema. */
  own?: {
    name: string;
    summary: string;
    response: JsonSchema;
    contentType?: string;
    body?: JsonSchema;
  };
}

/** The daemon's own routes (not commands). */
export const OWN_ROUTES: readonly {
  method: string;
  path: string;
  name: string;
  summary: string;
  response: JsonSchema;
  /** Its content type, when not JSON. */
  contentType?: string;
  /** Its request body, when it takes one. */
  body?: JsonSchema;
}[] = [
  {
    method: "POST",
    path: "/v1/cli",
    name: "cli",
    summary:
      "a whole `vmnic` command line, run as the CLI would run it: what it prints and its exit code (the CLI's fast path)",
    body: {
      type: "object",
      properties: {
        argv: { type: "array", items: { type: "string" } },
        env: {
          type: "object",
          description:
            "VMNIC_* and TRACEPARENT, as the command line reads them",
          additionalProperties: { type: "string" },
        },
        version: {
          type: "string",
          description: "the client's; another version gets runLocally",
        },
      },
      required: ["argv", "version"],
      additionalProperties: false,
    },
    response: {
      oneOf: [
        {
          type: "object",
          properties: {
            exitCode: { type: "integer" },
            output: {
              type: "array",
              items: {
                type: "object",
                properties: {
                  fd: { type: "integer", enum: [1, 2] },
                  text: { type: "string" },
                },
                required: ["fd", "text"],
              },
            },
          },
          required: ["exitCode", "output"],
        },
        {
          type: "object",
          description:
            "the line needs the client's process (stdin, files, no provider, a stream, another install): nothing was done",
          properties: { runLocally: { type: "string" } },
          required: ["runLocally"],
        },
      ],
    },
  },
  {
    method: "GET",
    path: "/metrics",
    name: "metrics",
    summary:
      "Prometheus text format: operations, phase latencies, NICs by state, pool, plugin and hook failures, watcher reactions",
    response: { type: "string" },
    contentType: "text/plain; version=0.0.4",
  },
  {
    method: "GET",
    path: "/v1/openapi.json",
    name: "openapi",
    summary: "this document",
    response: { type: "object" },
  },
  {
    method: "GET",
    path: "/v1/health",
    name: "health",
    summary: "the daemon is up: what it serves, since when, what it runs",
    response: {
      type: "object",
      properties: {
        ok: { type: "boolean" },
        version: { type: "string" },
        pid: { type: "integer" },
        since: { type: "string" },
        rootDir: { type: "string" },
        netnsPrefix: { type: "string" },
        inFlight: { type: "integer" },
        watcher: {
          type: "object",
          description: "the watcher (docs/watcher.md): running (false with " +
            "an error when it could not start), its reactions, VMs and " +
            "NICs watched, counters",
          properties: {
            running: { type: "boolean" },
            carrier: { type: "string", enum: ["off", "report", "repair"] },
            netns: { type: "string", enum: ["off", "report", "repair"] },
            host: { type: "string", enum: ["off", "report", "repair"] },
            vms: { type: "integer" },
            nics: { type: "integer" },
            counters: { type: "object" },
            error: { type: "string" },
          },
          required: ["running"],
        },
      },
      required: ["ok", "version", "pid", "since", "rootDir", "netnsPrefix"],
    },
  },
  {
    method: "GET",
    path: "/v1/pool",
    name: "pool",
    summary:
      "the warm pool: pre-wired NIC slots per network, and the IPs they hold",
    response: {
      type: "object",
      properties: {
        pools: {
          type: "array",
          items: {
            type: "object",
            properties: {
              network: { type: "string" },
              queues: { type: "integer" },
              target: { type: "integer" },
              ready: { type: "integer" },
              filling: { type: "integer" },
              claimed: { type: "integer" },
              refills: { type: "integer" },
              slots: {
                type: "array",
                items: {
                  type: "object",
                  properties: {
                    id: { type: "string" },
                    state: { type: "string" },
                    ips: { type: "array", items: { type: "string" } },
                  },
                },
              },
            },
          },
        },
      },
      required: ["pools"],
    },
  },
];

/** Every route: the commands' (loaded from the table) and the daemon's own. */
export async function loadRoutes(): Promise<Route[]> {
  const routes: Route[] = [];
  for (const entry of Object.values(COMMANDS)) {
    const command = (await entry.load()).default;
    if (!command.http) continue;
    if (!command.http.input && command.http.path.includes("{")) {
      // Its parameters would be dropped: `{}` is the input of no route.
      throw new Error(
        `${command.name}: ${command.http.path} has parameters but no input()`,
      );
    }
    routes.push({
      method: command.http.method,
      path: command.http.path,
      segments: split(command.http.path),
      command,
    });
  }
  for (const r of OWN_ROUTES) {
    routes.push({
      method: r.method,
      path: r.path,
      segments: split(r.path),
      own: r,
    });
  }
  return routes;
}

/** What {@linkcode matchRoute} found. */
export type Match =
  | { route: Route; params: Record<string, string> }
  | { allowed: string[] }
  | null;

/**
 * The route of `method` and `path` with its parameters; `{ allowed }` when
 * the path exists for other methods (405); null when no route has it (404).
 */
export function matchRoute(
  routes: readonly Route[],
  method: string,
  path: string,
): Match {
  const segs = split(path);
  const allowed: string[] = [];
  for (const route of routes) {
    const params = matchSegments(route.segments, segs);
    if (!params) continue;
    if (route.method === method) return { route, params };
    allowed.push(route.method);
  }
  return allowed.length ? { allowed } : null;
}

function matchSegments(
  template: string[],
  segs: string[],
): Record<string, string> | null {
  if (template.length !== segs.length) return null;
  const params: Record<string, string> = {};
  for (const [i, t] of template.entries()) {
    if (t.startsWith("{") && t.endsWith("}")) {
      let v: string;
      try {
        v = decodeURIComponent(segs[i]);
      } catch {
        return null;
      }
      if (!v) return null;
      params[t.slice(1, -1)] = v;
    } else if (t !== segs[i]) return null;
  }
  return params;
}

function split(path: string): string[] {
  return path.split("/").filter(Boolean);
}

/** The OpenAPI 3.1 document of `routes`. */
export function openApiDocument(routes: readonly Route[]): JsonSchema {
  const paths: Record<string, Record<string, unknown>> = {};
  const sorted = [...routes].sort((a, b) =>
    a.path.localeCompare(b.path) || a.method.localeCompare(b.method)
  );
  for (const r of sorted) {
    const name = r.command?.name ?? r.own!.name;
    const http = r.command?.http;
    const parameters = [
      ...r.segments.filter((s) => s.startsWith("{")).map((s) => ({
        name: s.slice(1, -1),
        in: "path",
        required: true,
        schema: { type: "string" },
      })),
      ...Object.entries(http?.query ?? {}).map(([qn, q]) => ({
        name: qn,
        in: "query",
        required: false,
        description: q.description,
        schema: q.schema,
      })),
    ];
    const error = (description: string) => ({
      description,
      content: { "application/json": { schema: errorBody } },
    });
    paths[r.path] ??= {};
    paths[r.path][r.method.toLowerCase()] = {
      operationId: name,
      summary: r.command ? COMMANDS[name].summary : r.own!.summary,
      ...(parameters.length ? { parameters } : {}),
      ...(http?.body || r.own?.body
        ? {
          requestBody: {
            required: r.own?.body !== undefined,
            content: {
              "application/json": { schema: http?.body ?? r.own!.body },
            },
          },
        }
        : {}),
      responses: {
        "200": {
          description: "done",
          content: {
            [r.own?.contentType ?? "application/json"]: {
              schema: http?.response ?? r.own!.response,
            },
          },
        },
        ...(r.own?.body
          ? {
            "400": error("the body is not a command line (UsageError)"),
            "413": error("the body is larger than the daemon takes"),
          }
          : {}),
        ...(r.command
          ? {
            "400": error(
              "bad input (UsageError, InvalidInputError): nothing changed",
            ),
            "404": error("not found (NotFoundError)"),
            "409": error(
              "conflict with what exists, or the VM is busy (ConflictError, VmBusyError)",
            ),
            "500": error("the operation failed (OperationError and kin)"),
          }
          : {}),
      },
    };
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "vmnic",
      version: VERSION,
      description:
        "CNI networking for microVMs: the API of `vmnic serve` over its Unix " +
        "socket. Each route runs the CLI command of the same name " +
        "(docs/cli.md); errors carry the CLI's error JSON.",
    },
    paths,
  };
}
