/**
 * One `vmnic serve` per socket and per root dir (issue #10 §2): a second
 * daemon on the same socket, or on another socket for the same root dir,
 * exits 1 saying why and leaves the first one serving; of two started at
 * once for one root dir exactly one serves; a socket file left by a daemon
 * killed with SIGKILL is replaced by the next start; a regular file where
 * the socket should be is refused and kept. A CLI naming another install's
 * settings is refused by the daemon, not served from the wrong install.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { rootTest } from "../support/harness.ts";
import { type Fixture, makeFixture, runCli } from "../provider/_fixture.ts";
import {
  at,
  type DaemonProcess,
  killDaemons,
  request,
  socketDir,
  spawnDaemon,
  startDaemon,
} from "./_daemon.ts";

/** The fixture's flags with another root dir. */
function otherRoot(fx: Fixture): string[] {
  return fx.flags.map((f) =>
    f.startsWith("--root-dir=") ? `--root-dir=${join(fx.dir, "root2")}` : f
  );
}

/** Runs a daemon that must refuse to start: its exit and log. */
async function refused(
  fx: Fixture,
  socket: string,
  opts: { flags?: string[]; json?: boolean } = {},
): Promise<{ code: number; log: string }> {
  const d = spawnDaemon(fx, {
    socket,
    flags: opts.flags,
    args: opts.json ? ["--json"] : [],
  });
  const exit = await d.exited;
  assert.equal(exit.signal, null, d.log());
  return { code: exit.code, log: d.log() };
}

/** The pid the daemon on `socket` says it has. */
async function pidOn(socket: string): Promise<number> {
  const h = await request(socket, "GET", "/v1/health");
  assert.equal(h.status, 200, h.text);
  return (h.json as { pid: number }).pid;
}

rootTest(
  "serve: one daemon per socket and per root dir; stale sockets are replaced, other files kept",
  async (t) => {
    const fx = await makeFixture("one", { octet: 167 });
    const dir = await socketDir();
    try {
      const s1 = at(dir, "one.sock");
      const s2 = at(dir, "two.sock");
      let first: DaemonProcess = await startDaemon(fx, { socket: s1 });

      await t.step("a second daemon on the same socket", async () => {
        const r = await refused(fx, s1, { flags: otherRoot(fx) });
        assert.equal(r.code, 1, r.log);
        assert.equal(
          r.log.trim(),
          `vmnic serve: another vmnic serve answers on ${s1}`,
        );
        assert.equal(await pidOn(s1), first.pid, "the first one serves on");
      });

      await t.step("a second daemon for the same root dir", async () => {
        for (const socket of [s2, s1]) {
          const r = await refused(fx, socket, { json: true });
          assert.equal(r.code, 1, r.log);
          const e = JSON.parse(r.log).error;
          assert.equal(e.type, "ServeError");
          assert.match(
            e.message,
            new RegExp(
              `^another vmnic serve runs for root dir ${fx.rootDir} ` +
                `\\(pid ${first.pid} since [^)]+\\): one daemon per install$`,
            ),
          );
        }
        await assert.rejects(Deno.lstat(s2), Deno.errors.NotFound);
        assert.equal(await pidOn(s1), first.pid, "the first one serves on");
      });

      await t.step(
        "a CLI with another install's settings is refused",
        async () => {
          const r = await runCli([
            ...otherRoot(fx),
            "--json",
            `--socket=${s1}`,
            "vms",
          ]);
          assert.equal(r.code, 1, r.stderr);
          const e = JSON.parse(r.stderr).error;
          assert.equal(e.type, "SettingsMismatch");
          assert.match(
            e.message,
            new RegExp(
              `^this vmnic serve has rootDir "${fx.rootDir}", not "${
                join(fx.dir, "root2")
              }": it serves another install`,
            ),
          );
          await assert.rejects(
            Deno.lstat(join(fx.dir, "root2", "vmnic.db")),
            Deno.errors.NotFound,
          );
        },
      );

      await t.step(
        "a socket left by a daemon killed with SIGKILL is replaced",
        async () => {
          assert.deepEqual(await first.kill(), {
            code: 137,
            signal: "SIGKILL",
          });
          assert.ok(
            (await Deno.lstat(s1)).isSocket,
            "the stale socket is left",
          );
          first = await startDaemon(fx, { socket: s1 });
          assert.equal(await pidOn(s1), first.pid);
          assert.deepEqual(await first.stop(), { code: 0, signal: null });
        },
      );

      await t.step(
        "of two started at once for one root dir, one serves",
        async () => {
          const a = spawnDaemon(fx, { socket: s1 });
          const b = spawnDaemon(fx, { socket: s2 });
          const loser = await Promise.race([
            a.exited.then(() => a),
            b.exited.then(() => b),
          ]);
          const winner = loser === a ? b : a;
          assert.deepEqual(await loser.exited, { code: 1, signal: null });
          assert.match(loser.log(), /another vmnic serve runs for root dir/);
          for (let i = 0; i < 600 && !winner.log().includes("listening"); i++) {
            await new Promise((r) => setTimeout(r, 50));
          }
          assert.equal(await pidOn(winner.socket), winner.pid);
          await assert.rejects(Deno.lstat(loser.socket), Deno.errors.NotFound);
          assert.deepEqual(await winner.stop(), { code: 0, signal: null });
        },
      );

      await t.step(
        "a regular file at the socket path is refused and kept",
        async () => {
          const file = at(dir, "file.sock");
          await Deno.writeTextFile(file, "keep me\n");
          const r = await refused(fx, file);
          assert.equal(r.code, 1, r.log);
          assert.equal(
            r.log.trim(),
            `vmnic serve: ${file} exists and is not a socket: remove it or ` +
              "choose another --socket",
          );
          assert.equal(await Deno.readTextFile(file), "keep me\n");
          // It let go of the root dir: the next daemon starts.
          const next = await startDaemon(fx, { socket: s1 });
          assert.deepEqual(await next.stop(), { code: 0, signal: null });
        },
      );
    } finally {
      await killDaemons();
      await fx.cleanup();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
