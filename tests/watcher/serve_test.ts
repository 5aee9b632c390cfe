/**
 * The watcher inside `vmnic serve`: the --watch-* flags, its state in
 * `GET /v1/health`, a TAP losing its carrier under a running daemon, and a
 * bad flag refused before anything starts. The daemon runs as its own
 * process (killed by its PID at the end).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { makeFixture } from "../provider/_fixture.ts";
import { CLI_MAIN, CLI_PERMISSIONS, REPO_ROOT } from "../support/cli.ts";
import { rootTest, run } from "../support/harness.ts";
import type { NicConfig, VmInfo } from "../../src/provider/types.ts";
import type { WatcherStatus } from "../../src/watcher/watcher.ts";
import { libc } from "../../src/sys/libc.ts";
import { attachTap, waitFor } from "./_support.ts";

/** One GET over the daemon's Unix socket; the JSON body. */
async function getJson<T>(socket: string, path: string): Promise<T> {
  const conn = await Deno.connect({ transport: "unix", path: socket });
  try {
    await conn.write(
      new TextEncoder().encode(
        `GET ${path} HTTP/1.1\r\nhost: vmnic\r\nconnection: close\r\n\r\n`,
      ),
    );
    const text = await new Response(conn.readable).text();
    const body = text.slice(text.indexOf("\r\n\r\n") + 4);
    // Chunked or not: the JSON object is between the outer braces.
    return JSON.parse(body.slice(body.indexOf("{"), body.lastIndexOf("}") + 1));
  } catch (e) {
    conn.close();
    throw e;
  }
}

rootTest(
  "watcher in vmnic serve: --watch-* flags, GET /v1/health, a TAP losing its carrier",
  async () => {
    const fx = await makeFixture("wsv", { octet: 184 });
    const socket = join(fx.dir, "vmnic.sock");
    let daemon: Deno.ChildProcess | undefined;
    let fd = -1;
    try {
      const [nic] = await fx.cliOk<NicConfig[]>(["add", "vm1"]);
      daemon = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          ...CLI_PERMISSIONS,
          CLI_MAIN,
          "serve",
          ...fx.flags,
          `--socket=${socket}`,
          "--watch-carrier=repair",
          "--watch-netns=off",
          "--watch-host=report",
          "--watch-settle=200",
        ],
        cwd: REPO_ROOT,
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      let log = "";
      void (async () => {
        for await (
          const t of daemon!.stderr.pipeThrough(new TextDecoderStream())
        ) {
          log += t;
        }
      })();
      const { value: health } = await waitFor(
        "the daemon's health",
        async () => {
          try {
            const h = await getJson<{ watcher?: WatcherStatus }>(
              socket,
              "/v1/health",
            );
            return h.watcher?.running ? h : undefined;
          } catch {
            return undefined;
          }
        },
        30_000,
      );
      const w = health.watcher!;
      assert.deepEqual(
        [w.carrier, w.netns, w.host, w.vms, w.nics],
        ["repair", "off", "report", 1, 1],
      );
      assert.equal(w.counters.reactions["carrier-lost"].repaired, 0);
      assert.match(log, /vmnic watch: carrier repair, netns off, host report/);

      fd = attachTap(nic.netnsPath, nic.tap);
      await new Promise((r) => setTimeout(r, 500));
      libc().close(fd);
      fd = -1;
      await waitFor("vm1 quiesced by the daemon's watcher", async () => {
        const vms = await fx.cliOk<VmInfo[]>(["vms"]);
        return vms[0]?.quiesced;
      });
      const after = await getJson<{ watcher: WatcherStatus }>(
        socket,
        "/v1/health",
      );
      assert.equal(
        after.watcher.counters.reactions["carrier-lost"].repaired,
        1,
      );
      const events = await fx.cliOk<{ op: string; outcome: string }[]>([
        "events",
        "--op",
        "watch:carrier-lost",
      ]);
      assert.deepEqual(events.map((e) => [e.op, e.outcome]), [
        ["watch:carrier-lost", "ok"],
      ]);
    } finally {
      if (fd >= 0) libc().close(fd);
      if (daemon) {
        try {
          Deno.kill(daemon.pid, "SIGTERM");
        } catch { /* gone */ }
        await daemon.status;
      }
      await fx.cleanup();
    }
  },
);

rootTest("vmnic serve refuses a --watch-* flag it does not know", async () => {
  const r = await run(Deno.execPath(), [
    "run",
    ...CLI_PERMISSIONS,
    CLI_MAIN,
    "serve",
    "--socket=/nonexistent/vmnic.sock",
    "--watch-carrier=sometimes",
  ], { cwd: REPO_ROOT });
  assert.equal(r.code, 2, r.stderr);
  assert.match(
    r.stderr,
    /invalid --watch-carrier "sometimes": off, report or repair/,
  );
});
