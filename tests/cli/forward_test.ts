/**
 * The CLI's fast path (`src/cli/forward.ts`) and the daemon's side of it
 * (`src/server/cli_route.ts`): which lines go to the daemon and where,
 * what a daemon answers for lines only the client can run, and the
 * answer's parsing. The whole path against a real daemon, every command,
 * byte for byte against in process, is tests/server/cli_parity_test.ts.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  type CliReply,
  DAEMON_COMMANDS,
  DEFAULT_SOCKET,
  parseResponse,
  socketFor,
} from "../../src/cli/forward.ts";
import type { InDaemon } from "../../src/cli/run.ts";
import { COMMANDS } from "../../src/cli/table.ts";
import { UsageError } from "../../src/cli/args.ts";
import { runCommandLine } from "../../src/server/cli_route.ts";
import { VERSION } from "../../src/version.ts";
import { run } from "../support/harness.ts";
import { CLI_MAIN, CLI_PERMISSIONS, REPO_ROOT } from "../support/cli.ts";

Deno.test("the daemon runs exactly the commands that have a route and open a provider", async () => {
  const want = new Set<string>();
  for (const [name, entry] of Object.entries(COMMANDS)) {
    const command = (await entry.load()).default;
    if (command.http && command.provider !== "none") want.add(name);
  }
  assert.deepEqual([...DAEMON_COMMANDS].sort(), [...want].sort());
});

Deno.test("socketFor: which lines go to which socket", () => {
  const env = (vars: Record<string, string>) => (k: string) => vars[k];
  const none = env({});
  assert.equal(socketFor(["add", "vm1"], none), DEFAULT_SOCKET);
  assert.equal(socketFor(["--json", "add", "vm1"], none), DEFAULT_SOCKET);
  assert.equal(
    socketFor(["add", "vm1"], env({ VMNIC_SOCKET: "/s/env.sock" })),
    "/s/env.sock",
  );
  // An empty variable counts as unset, as for every setting.
  assert.equal(
    socketFor(["add", "vm1"], env({ VMNIC_SOCKET: "" })),
    DEFAULT_SOCKET,
  );
  const flagged = env({ VMNIC_SOCKET: "/s/env.sock" });
  assert.equal(socketFor(["add", "vm1", "--socket=/s/a"], flagged), "/s/a");
  assert.equal(socketFor(["--socket", "/s/b", "add", "vm1"], flagged), null);
  assert.equal(socketFor(["add", "--socket", "/s/b", "vm1"], flagged), "/s/b");
  // Run here: --no-daemon, local-only commands, no command, an empty
  // socket (the full CLI refuses it), options after `--`.
  assert.equal(socketFor(["add", "vm1", "--no-daemon"], none), null);
  for (const local of ["version", "doctor", "serve", "restore-records"]) {
    assert.equal(socketFor([local], none), null, local);
  }
  assert.equal(socketFor([], none), null);
  assert.equal(socketFor(["--help"], none), null);
  assert.equal(socketFor(["add", "vm1", "--socket="], none), null);
  assert.equal(socketFor(["--", "add"], none), null);
  assert.equal(
    socketFor(["add", "vm1", "--", "--no-daemon", "--socket=/x"], none),
    DEFAULT_SOCKET,
  );
  // A global option with its value in the next word comes first: the
  // full CLI parses the line (and uses the command's route).
  assert.equal(socketFor(["--root-dir", "/r", "add", "vm1"], none), null);
});

Deno.test("parseResponse: plain and chunked bodies, multibyte text, truncation", () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  assert.deepEqual(
    parseResponse(enc(
      'HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{"a":"é"}',
    )),
    { status: 200, body: '{"a":"é"}' },
  );
  // "é" is two bytes: sizes count bytes, and a chunk may split it.
  const body = enc('{"a":"é"}');
  const chunked = new Uint8Array([
    ...enc("HTTP/1.1 409 Conflict\r\ntransfer-encoding: chunked\r\n\r\n"),
    ...enc("7\r\n"),
    ...body.subarray(0, 7),
    ...enc("\r\n3\r\n"),
    ...body.subarray(7),
    ...enc("\r\n0\r\n\r\n"),
  ]);
  assert.deepEqual(parseResponse(chunked), {
    status: 409,
    body: '{"a":"é"}',
  });
  assert.throws(() => parseResponse(enc("HTTP/1.1 200 OK\r\n")), /truncated/);
  assert.throws(() => parseResponse(enc("SSH-2.0\r\n\r\n")), /not an HTTP/);
});

/** A daemon that must not be asked: a line it runs locally never reaches it. */
const untouched: InDaemon = {
  call: (method, path) => {
    throw new Error(`asked ${method} ${path}`);
  },
};

/** A daemon that records what it is asked and answers `reply`. */
function recording(status: number, body: unknown) {
  const asked: string[] = [];
  const daemon: InDaemon = {
    call: (method, path, parts, headers) => {
      asked.push(
        `${method} ${path} ${JSON.stringify(parts)} ${JSON.stringify(headers)}`,
      );
      return Promise.resolve({ status, body });
    },
  };
  return { asked, daemon };
}

const line = (argv: string[], env: Record<string, string> = {}) => ({
  argv,
  env,
  version: VERSION,
});

Deno.test("POST /v1/cli: lines only the client can run are handed back, having asked nothing", async () => {
  const local = async (argv: string[], env?: Record<string, string>) => {
    const reply = await runCommandLine(line(argv, env), untouched);
    assert.ok("runLocally" in reply, `${argv.join(" ")}: ${reply}`);
    return reply.runLocally;
  };
  assert.match(await local(["gc", "--active-file", "-"]), /stdin/);
  assert.match(await local(["gc", "--active-file", "/etc/hostname"]), /file/);
  for (const other of ["version", "doctor", "serve", "restore-records"]) {
    assert.match(await local([other]), /not one the daemon runs/, other);
  }
  assert.match(
    await local(["--socket", "/s", "serve", "--root-dir", "/x"]),
    /not one the daemon runs/,
  );
  assert.match(await local(["add", "vm1", "--no-daemon"]), /client/);
  assert.match(await local(["events", "--follow"]), /client/);
  // A time without its offset is the client's local time, not the daemon's.
  assert.match(
    await local(["events", "--since", "2026-12-01T10:00:00"]),
    /time zone/,
  );
  // Settings without --socket: another install may be meant.
  assert.match(await local(["add", "vm1", "--root-dir=/elsewhere"]), /client/);
  assert.match(
    await local(["add", "vm1"], { VMNIC_ROOT_DIR: "/elsewhere" }),
    /client/,
  );
  // Another version: its output could differ from the client's own.
  const older = await runCommandLine(
    { ...line(["add", "vm1"]), version: "0.0.0-other" },
    untouched,
  );
  assert.ok("runLocally" in older && /version/.test(older.runLocally));
});

Deno.test("POST /v1/cli: the CLI's own printing, usage errors and exit codes", async () => {
  const ok = recording(200, [{ vmId: "vm1", index: 0, ifName: "eth0" }]);
  const out = await runCommandLine(
    line(["--json", "list", "--vm", "vm1"], { VMNIC_WAIT: "2" }),
    ok.daemon,
  ) as Extract<CliReply, { exitCode: number }>;
  assert.equal(out.exitCode, 0);
  assert.deepEqual(out.output[0], {
    fd: 1,
    text: JSON.stringify([{ vmId: "vm1", index: 0, ifName: "eth0" }], null, 2),
  });
  assert.equal(ok.asked.length, 1);
  assert.match(
    ok.asked[0],
    /^GET \/v1\/vms\/\{vm\}\/nics .*"vmnic-wait":"2000"/,
  );

  const missing = recording(404, {
    error: {
      type: "NotFoundError",
      message: "inspect x: no NIC",
      op: "inspect",
      object: "x",
      reason: "no NIC",
    },
  });
  const nf = await runCommandLine(
    line(["inspect", "0123456789abcdef"]),
    missing.daemon,
  ) as Extract<CliReply, { exitCode: number }>;
  assert.equal(nf.exitCode, 3);
  assert.deepEqual(nf.output, [{ fd: 2, text: "vmnic inspect x: no NIC" }]);

  const bad = await runCommandLine(line(["add"]), untouched) as Extract<
    CliReply,
    { exitCode: number }
  >;
  assert.equal(bad.exitCode, 2);
  assert.equal(bad.output[0].fd, 2);
  assert.match(bad.output[0].text, /^vmnic: /);
});

Deno.test("POST /v1/cli: a body that is not a command line is a UsageError", async () => {
  for (
    const body of [
      null,
      [],
      "add vm1",
      { argv: "add vm1", version: VERSION },
      { argv: ["add", 1], version: VERSION },
      { argv: ["add"], env: { VMNIC_WAIT: 2 }, version: VERSION },
      { argv: ["add"] },
      { argv: ["add"], version: VERSION, cwd: "/" },
    ]
  ) {
    await assert.rejects(
      () => runCommandLine(body, untouched),
      UsageError,
      JSON.stringify(body),
    );
  }
});

// ------------------------------------------- the client, against stand-ins

/**
 * A stand-in for `vmnic serve` on a Unix socket: it records each request
 * line and answers with `answer` (raw HTTP). It produces what a real
 * daemon cannot be made to: garbage, a cut answer, an older daemon's 404.
 */
async function standIn(
  answer: (requestLine: string) => string,
): Promise<{ socket: string; seen: string[]; close(): Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "vmnic-fwd-" });
  const socket = `${dir}/s.sock`;
  const listener = Deno.listen({ transport: "unix", path: socket });
  const seen: string[] = [];
  const served = (async () => {
    for await (const conn of listener) {
      const buf = new Uint8Array(2 * 1024 * 1024);
      let text = "";
      // Up to the end of the body (content-length), then answer.
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        text += new TextDecoder().decode(buf.subarray(0, n));
        const end = text.indexOf("\r\n\r\n");
        const length = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? 0);
        if (
          end >= 0 &&
          new TextEncoder().encode(text.slice(end + 4)).length >= length
        ) {
          break;
        }
      }
      const line = text.split("\r\n")[0].split(" ").slice(0, 2).join(" ");
      seen.push(line);
      try {
        const bytes = new TextEncoder().encode(answer(line));
        for (let at = 0; at < bytes.length;) {
          at += await conn.write(bytes.subarray(at));
        }
      } catch { /* the client left */ }
      conn.close();
    }
  })();
  return {
    socket,
    seen,
    async close() {
      listener.close();
      await served.catch(() => {});
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function http(status: number, body: string): string {
  return `HTTP/1.1 ${status} X\r\ncontent-type: application/json\r\n` +
    `content-length: ${new TextEncoder().encode(body).length}\r\n` +
    `connection: close\r\n\r\n${body}`;
}

/** The CLI as a process, with `VMNIC_SOCKET` and no other VMNIC_* setting. */
function cli(socket: string, args: string[]) {
  return run(Deno.execPath(), ["run", ...CLI_PERMISSIONS, CLI_MAIN, ...args], {
    cwd: REPO_ROOT,
    env: { PATH: Deno.env.get("PATH") ?? "", VMNIC_SOCKET: socket },
    clearEnv: true,
  });
}

Deno.test("the client prints the daemon's lines in order and exits with its code", async () => {
  const d = await standIn(() =>
    http(
      200,
      JSON.stringify({
        exitCode: 3,
        output: [{ fd: 2, text: "first é" }, { fd: 1, text: "second" }],
      }),
    )
  );
  try {
    const r = await cli(d.socket, ["inspect", "x"]);
    assert.deepEqual(r, { code: 3, stdout: "second\n", stderr: "first é\n" });
    assert.deepEqual(d.seen, ["POST /v1/cli"]);
  } finally {
    await d.close();
  }
});

Deno.test("the client: a daemon that cannot answer is an error, JSON with --json, never a second run", async () => {
  for (
    const [name, raw] of [
      ["cut", "HTTP/1.1 200 OK\r\ncontent-le"],
      ["not an object", http(200, '"x"')],
      ["not JSON", http(200, "<html>")],
      ["no exit code", http(200, JSON.stringify({ output: [] }))],
      [
        "a line for fd 3",
        http(
          200,
          JSON.stringify({ exitCode: 0, output: [{ fd: 3, text: "x" }] }),
        ),
      ],
      ["failed", http(500, JSON.stringify({ error: { message: "boom" } }))],
    ] as const
  ) {
    const d = await standIn(() => raw);
    try {
      const text = await cli(d.socket, ["inspect", "x"]);
      assert.equal(text.code, 1, `${name}: ${text.stderr}`);
      assert.match(text.stderr, /^vmnic: vmnic serve on /, name);
      assert.doesNotMatch(text.stderr, /Uncaught|at /, name);
      const json = await cli(d.socket, ["--json", "inspect", "x"]);
      assert.equal(json.code, 1, name);
      assert.equal(JSON.parse(json.stderr).error.type, "DaemonError", name);
      // Only the one request: the line did not run again by its route.
      assert.deepEqual(d.seen, ["POST /v1/cli", "POST /v1/cli"], name);
    } finally {
      await d.close();
    }
  }
});

Deno.test("the client: an older daemon (404) or one that says so gets the line by its route", async () => {
  for (
    const raw of [
      http(404, JSON.stringify({ error: { message: "no route" } })),
      http(200, JSON.stringify({ runLocally: "another version" })),
    ]
  ) {
    const d = await standIn((line) =>
      line === "POST /v1/cli"
        ? raw
        : http(200, JSON.stringify({ vmId: "x", index: 0, state: "active" }))
    );
    try {
      const r = await cli(d.socket, ["--json", "inspect", "x"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).vmId, "x");
      assert.deepEqual(d.seen, ["POST /v1/cli", "GET /v1/nics/x"]);
    } finally {
      await d.close();
    }
  }
});

Deno.test("the client: a line larger than the daemon takes is not sent", async () => {
  const d = await standIn(() => http(500, "{}"));
  try {
    // 20 ids of 60 KB: over the 1 MiB body limit, under Linux's argv one.
    const ids = Array.from(
      { length: 20 },
      (_, i) => `v${i}`.padEnd(60_000, "x"),
    );
    const r = await cli(d.socket, ["delete", ...ids]);
    assert.equal(r.code, 2, r.stderr); // the CLI's own check of the ids
    assert.deepEqual(d.seen, []);
  } finally {
    await d.close();
  }
});

Deno.test("the client: a reader that goes away (| head) ends the output quietly, the exit code kept", async () => {
  const d = await standIn(() =>
    http(
      200,
      JSON.stringify({
        exitCode: 0,
        output: Array.from({ length: 2000 }, (_, i) => ({
          fd: 1,
          text: `line ${i} `.padEnd(200, "."),
        })),
      }),
    )
  );
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", ...CLI_PERMISSIONS, CLI_MAIN, "vms"],
      cwd: REPO_ROOT,
      env: { VMNIC_SOCKET: d.socket },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    await child.stdout.cancel(); // the reader is gone before any output
    const [status, stderr] = await Promise.all([
      child.status,
      new Response(child.stderr).text(),
    ]);
    assert.equal(status.code, 0, stderr);
    assert.equal(stderr, "");
  } finally {
    await d.close();
  }
});
