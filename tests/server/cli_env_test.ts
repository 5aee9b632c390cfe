/**
 * A slip in a setting's variable (`VMNIC_ROOTDIR` for `VMNIC_ROOT_DIR`) is
 * refused before anything happens, on each way a command line runs: in
 * the process, in the daemon (`POST /v1/cli` checks the client's `VMNIC_*`
 * names, for a client that did not) and by `vmnic serve` itself. A name a
 * word short (`VMNIC_ROOT`) may be a hook's own: the command runs, with a
 * warning unless the setting is given. A hook's variable passes silently.
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
import { VERSION } from "../../src/version.ts";

/** The CLI as a process with `env` and only `args`. */
function vmnic(args: string[], env: Record<string, string>) {
  return run(Deno.execPath(), ["run", ...CLI_PERMISSIONS, CLI_MAIN, ...args], {
    cwd: REPO_ROOT,
    env: cleanEnv(env),
    clearEnv: true,
  });
}

rootTest(
  "a misspelt setting variable: refused in the process, in the daemon and by vmnic serve; a word short, warned",
  async () => {
    const fx = await makeFixture("ev", { octet: 244 });
    const dir = await socketDir();
    try {
      const socket = at(dir, "vmnic.sock");
      const daemon = await startDaemon(fx, { socket });
      const vms = async () =>
        (await request(socket, "GET", "/v1/vms")).json as unknown[];
      const slip =
        /VMNIC_ROOTDIR is not a vmnic setting; did you mean VMNIC_ROOT_DIR\?/;

      // The client: the line names no settings and would go to the daemon.
      const sent = await vmnic(["add", "ev1", "--json"], {
        VMNIC_SOCKET: socket,
        VMNIC_ROOTDIR: `${fx.dir}/elsewhere`,
      });
      assert.equal(sent.code, 2, sent.stderr);
      assert.match(JSON.parse(sent.stderr).error.message, slip);
      assert.equal(sent.stdout, "");

      // The daemon, asked by a client that did not check.
      const asked = await request(socket, "POST", "/v1/cli", {
        json: {
          argv: ["add", "ev1", "--json"],
          env: { VMNIC_ROOTDIR: `${fx.dir}/elsewhere` },
          version: VERSION,
        },
      });
      assert.equal(asked.status, 200, asked.text);
      const reply = asked.json as {
        exitCode: number;
        output: { fd: number; text: string }[];
      };
      assert.equal(reply.exitCode, 2, asked.text);
      assert.match(reply.output.map((l) => l.text).join("\n"), slip);
      assert.deepEqual(await vms(), []);
      assert.deepEqual(await fx.netns(), []);

      // A word short: it runs, and says which setting kept its default.
      const short = await vmnic(["add", "ev1", "--json"], {
        VMNIC_SOCKET: socket,
        VMNIC_ROOT: `${fx.dir}/elsewhere`,
      });
      assert.equal(short.code, 0, short.stderr);
      assert.equal(JSON.parse(short.stdout)[0].vmId, "ev1");
      assert.ok(
        short.stderr.split("\n").some((l) =>
          l.startsWith('{"warning":"VMNIC_ROOT is not a vmnic setting') &&
          l.includes("VMNIC_ROOT_DIR")
        ),
        short.stderr,
      );
      // Given by flag, no warning; a hook's own variable, none either.
      const given = await vmnic(
        [...fx.flags, "--no-daemon", "list", "--json"],
        {
          VMNIC_ROOT: `${fx.dir}/elsewhere`,
          VMNIC_AUDIT_LOG: `${fx.dir}/audit.log`,
        },
      );
      assert.equal(given.code, 0, given.stderr);
      assert.doesNotMatch(given.stderr, /warning/);
      assert.equal((await vms()).length, 1);
      const del = await vmnic(["delete", "ev1"], { VMNIC_SOCKET: socket });
      assert.equal(del.code, 0, del.stderr);

      // vmnic serve itself.
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
