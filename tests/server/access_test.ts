/**
 * Who may use `vmnic serve` (issue #10 §2): its socket is root's, mode
 * 0660, so a user who is not root cannot connect (permission denied), not
 * with curl and not with the CLI; with `--socket-group G` the socket is
 * root:G 0660 and G's members can use the API and the CLI through it. The
 * socket lives in a 0755 dir, so only its own mode decides. The user is
 * made for the test and removed after it.
 */
import assert from "node:assert/strict";
import { rootTest } from "../support/harness.ts";
import { makeFixture } from "../provider/_fixture.ts";
import { CLI_MAIN, CLI_PERMISSIONS } from "../support/cli.ts";
import type { VmInfo } from "../../src/provider/types.ts";
import { parseReply } from "./_net.ts";
import { at, killDaemons, socketDir, startDaemon } from "./_daemon.ts";
import { withUser } from "./_user.ts";

rootTest(
  "serve: a user who is not root cannot connect to the socket; a member of --socket-group can",
  async (t) => {
    const fx = await makeFixture("acc", { octet: 168 });
    const dir = await socketDir();
    try {
      await withUser(dir, async (user) => {
        const socket = at(dir, "vmnic.sock");
        assert.equal((await Deno.stat(dir)).mode! & 0o777, 0o755);
        const curlHealth = () =>
          user.run([
            "curl",
            "-q",
            "-v",
            "-sS",
            "-i",
            "--unix-socket",
            socket,
            "http://vmnic/v1/health",
          ]);
        const cliVms = () =>
          user.run([
            Deno.execPath(),
            "run",
            ...CLI_PERMISSIONS,
            CLI_MAIN,
            ...fx.flags,
            "--json",
            `--socket=${socket}`,
            "vms",
          ]);

        await t.step(
          "the default socket: root's, 0660; the user is refused",
          async () => {
            const daemon = await startDaemon(fx, { socket });
            try {
              const st = await Deno.lstat(socket);
              assert.ok(st.isSocket);
              assert.deepEqual([st.uid, st.gid, st.mode! & 0o7777], [
                0,
                0,
                0o660,
              ]);
              const c = await curlHealth();
              assert.equal(c.code, 7, `curl as ${user.name}: ${c.stdout}`);
              assert.match(
                c.stderr,
                new RegExp(`connect fail for ${socket}: Permission denied`),
              );
              const cli = await cliVms();
              assert.equal(
                cli.code,
                1,
                `the CLI as ${user.name}: ${cli.stdout}`,
              );
              assert.equal(cli.stdout, "");
              assert.match(
                JSON.parse(cli.stderr).error.message,
                /Permission denied/i,
              );
            } finally {
              assert.deepEqual(await daemon.stop(), { code: 0, signal: null });
            }
          },
        );

        await t.step(
          "--socket-group: root:group 0660; the member gets in",
          async () => {
            const daemon = await startDaemon(fx, {
              socket,
              args: [`--socket-group=${user.name}`],
            });
            try {
              const st = await Deno.lstat(socket);
              assert.deepEqual([st.uid, st.gid, st.mode! & 0o7777], [
                0,
                user.gid,
                0o660,
              ]);
              const c = await curlHealth();
              assert.equal(c.code, 0, c.stderr);
              const reply = parseReply(
                new TextEncoder().encode(c.stdout),
                true,
              );
              assert.equal(reply?.status, 200, c.stdout);
              assert.equal(JSON.parse(reply!.text).pid, daemon.pid);
              const add = await user.run([
                "curl",
                "-q",
                "-sS",
                "--unix-socket",
                socket,
                "-X",
                "POST",
                "-H",
                "content-type: application/json",
                "--data-binary",
                '{"nics": 1}',
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "http://vmnic/v1/vms/vmU/nics",
              ]);
              assert.equal(add.stdout, "200", add.stderr);
              const cli = await cliVms();
              assert.equal(cli.code, 0, cli.stderr);
              const vms = JSON.parse(cli.stdout) as VmInfo[];
              assert.deepEqual(
                vms.map((v) => [v.vmId, v.nics.map((n) => n.state)]),
                [["vmU", ["active"]]],
              );
            } finally {
              assert.deepEqual(await daemon.stop(), { code: 0, signal: null });
            }
          },
        );
      });
    } finally {
      await killDaemons();
      await fx.cleanup();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
