/**
 * A misspelt setting variable (`VMNIC_ROOT` for `VMNIC_ROOT_DIR`) is
 * refused before anything happens, on each way a command line runs: in
 * the process, through the daemon (`POST /v1/cli`, which gets the client's
 * `VMNIC_*` variables), and by `vmnic serve` itself. Unnoticed, the setting
 * would keep its default: the host's own install, or the daemon serving it.
 * A hook's own variable (`VMNIC_AUDIT_LOG`) is not a misspelling.
 */
import assert from "node:assert/strict";
import { rootTest, run } from "../support/harness.ts";
import { makeFixture } from "../provider/_fixture.ts";
import { CLI_MAIN, CLI_PERMISSIONS, REPO_ROOT } from "../support/cli.ts";
import {
  at,
  cleanEnv,
  killDaemons,
  request,
  socketDir,
  spawnDaemon,
  startDaemon,
} from "./_daemon.ts";

/** The CLI as a process with `env` and only `args` (no settings flags). */
function vmnic(args: string[], env: Record<string, string>) {
  return run(Deno.execPath(), ["run", ...CLI_PERMISSIONS, CLI_MAIN, ...args], {
    cwd: REPO_ROOT,
    env: cleanEnv(env),
    clearEnv: true,
  });
}

rootTest(
  "a misspelt setting variable is refused in the process, through the daemon and by vmnic serve",
  async () => {
    const fx = await makeFixture("ev", { octet: 244 });
    const dir = await socketDir();
    try {
      const socket = at(dir, "vmnic.sock");
      const daemon = await startDaemon(fx, { socket });
      const vms = async () =>
        (await request(socket, "GET", "/v1/vms")).json as unknown[];

      // Through the daemon: the line names no settings, so it goes there.
      const sent = await vmnic(["add", "ev1", "--json"], {
        VMNIC_SOCKET: socket,
        VMNIC_ROOT: `${fx.dir}/elsewhere`,
      });
      assert.equal(sent.code, 2, sent.stderr);
      assert.match(
        JSON.parse(sent.stderr).error.message,
        /VMNIC_ROOT is not a vmnic setting; did you mean VMNIC_ROOT_DIR\?/,
      );
      assert.equal(sent.stdout, "");
      assert.deepEqual(await vms(), []);
      assert.deepEqual(await fx.netns(), []);

      // In the process, with the fixture's settings as flags.
      const local = await vmnic(
        [...fx.flags, "--no-daemon", "add", "ev1", "--json"],
        { VMNIC_NETNS: "x" },
      );
      assert.equal(local.code, 2, local.stderr);
      assert.match(
        JSON.parse(local.stderr).error.message,
        /did you mean VMNIC_NETNS_DIR or VMNIC_NETNS_PREFIX\?/,
      );
      assert.deepEqual(await fx.netns(), []);

      // A hook's own variable goes along and changes nothing.
      const ok = await vmnic(["add", "ev1", "--json"], {
        VMNIC_SOCKET: socket,
        VMNIC_AUDIT_LOG: `${fx.dir}/audit.log`,
      });
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(JSON.parse(ok.stdout)[0].vmId, "ev1");
      assert.equal((await vms()).length, 1);
      const del = await vmnic(["delete", "ev1"], { VMNIC_SOCKET: socket });
      assert.equal(del.code, 0, del.stderr);

      // vmnic serve itself: it would serve the default install.
      const wrong = spawnDaemon(fx, {
        socket: at(dir, "other.sock"),
        env: { VMNIC_RUNDIR: `${fx.dir}/run2` },
      });
      const exit = await wrong.exited;
      assert.equal(exit.code, 2, wrong.log());
      assert.match(wrong.log(), /did you mean VMNIC_RUN_DIR\?/);
      await daemon.stop();
    } finally {
      await killDaemons();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      await fx.cleanup();
    }
  },
);
