/**
 * `POST /v1/cli`: a whole command line, run in the daemon for a client
 * (`src/cli/forward.ts`). It runs the CLI's own `main` with the daemon's
 * routes in place of a socket, so what it prints and its exit code are
 * those of the same line run in the client's process; a line that needs
 * the client's process (its stdin or files, no provider, a stream, another
 * install) is answered `runLocally`, having done nothing (docs/api.md).
 *
 * @module
 */
import { UsageError } from "../cli/args.ts";
import type { Io } from "../cli/command.ts";
import {
  type CliLine,
  type CliReply,
  type CliRequest,
  daemonCommandOf,
  isCliEnv,
} from "../cli/forward.ts";
import { type InDaemon, main, RunLocally } from "../cli/run.ts";
import { VERSION } from "../version.ts";

/** Runs the command line of `body` (a {@linkcode CliRequest}) through `daemon`. */
export async function runCommandLine(
  body: unknown,
  daemon: InDaemon,
): Promise<CliReply> {
  const request = cliRequest(body);
  if (request.version !== VERSION) {
    return {
      runLocally:
        `this vmnic serve is version ${VERSION}, the client ${request.version}`,
    };
  }
  // Only the commands the client sends (forward.ts): anything else, even
  // one whose own checks would hand it back, is refused before it parses.
  if (daemonCommandOf(request.argv) === null) {
    return { runLocally: "not one the daemon runs: no command it has" };
  }
  const output: CliLine[] = [];
  const io: Io = {
    out: (text) => output.push({ fd: 1, text }),
    err: (text) => output.push({ fd: 2, text }),
    env: (k) => isCliEnv(k) ? request.env[k] : undefined,
    envNames: () => Object.keys(request.env).filter(isCliEnv),
    readStdin: () => Promise.reject(new RunLocally("it reads stdin")),
    readFile: () => Promise.reject(new RunLocally("it reads a file")),
    // The client's time zone is not the daemon's.
    localTime: () => {
      throw new RunLocally("it reads a time in the client's time zone");
    },
  };
  try {
    return { exitCode: await main(request.argv, io, daemon), output };
  } catch (e) {
    if (e instanceof RunLocally) return { runLocally: e.message };
    throw e;
  }
}

/** `body` checked as a {@linkcode CliRequest}; a UsageError (400) if not. */
function cliRequest(body: unknown): CliRequest {
  const where = "POST /v1/cli";
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new UsageError(
      `${where}: the body must be {"argv": [...], "env": {...}, "version": "..."}`,
    );
  }
  const b = body as Record<string, unknown>;
  const unknown = Object.keys(b).filter((k) =>
    !["argv", "env", "version"].includes(k)
  );
  if (unknown.length) {
    throw new UsageError(
      `${where}: unknown field(s) ${
        unknown.join(", ")
      }; allowed: argv, env, version`,
    );
  }
  if (
    !Array.isArray(b.argv) || !b.argv.every((a) => typeof a === "string")
  ) {
    throw new UsageError(`${where}: argv must be an array of strings`);
  }
  const env = b.env ?? {};
  if (
    typeof env !== "object" || env === null || Array.isArray(env) ||
    !Object.values(env).every((v) => typeof v === "string")
  ) {
    throw new UsageError(`${where}: env must map names to strings`);
  }
  if (typeof b.version !== "string") {
    throw new UsageError(`${where}: version must be a string`);
  }
  return {
    argv: b.argv,
    env: env as Record<string, string>,
    version: b.version,
  };
}
