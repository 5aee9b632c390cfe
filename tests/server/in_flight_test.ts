/**
 * What `vmnic serve` does with an operation in flight (issue #10 §2): a
 * client that disconnects does not abort it half-way (the VM ends up whole:
 * its NIC active, its `afterAdd` run, `verify` ok); SIGTERM stops taking
 * new connections, lets the operation finish (its client gets 200 and the
 * NICs), then the daemon exits 0 and removes its socket.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { rootTest } from "../support/harness.ts";
import { type Fixture, makeFixture } from "../provider/_fixture.ts";
import { writeScript } from "../hooks/hook_fixtures.ts";
import type { NicConfig } from "../../src/provider/types.ts";
import {
  at,
  curl,
  type DaemonProcess,
  killDaemons,
  request,
  sleep,
  socketDir,
  startDaemon,
} from "./_daemon.ts";
import { hookMarks, timingHook } from "./_hooks.ts";
import { parseReply } from "./_net.ts";

/** Waits until the timing hook has started for `vm`. */
async function hookStarted(log: string, vm: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (
      (await hookMarks(log)).some((m) => m.what === "start" && m.vmId === vm)
    ) {
      return;
    }
    await sleep(25);
  }
  throw new Error(`the hook never started for ${vm}`);
}

/** `curl` adding one NIC to `vm`, as a process of its own. */
function curlAdd(socket: string, vm: string): Deno.ChildProcess {
  return new Deno.Command("curl", {
    args: [
      "-sS",
      "-i",
      "--max-time",
      "60",
      "--unix-socket",
      socket,
      "-X",
      "POST",
      "-H",
      "content-type: application/json",
      "--data-binary",
      '{"nics": 1}',
      `http://vmnic/v1/vms/${vm}/nics`,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** The daemon's requests in flight (besides the asking one). */
async function inFlight(d: DaemonProcess): Promise<number> {
  const h = await request(d.socket, "GET", "/v1/health");
  return (h.json as { inFlight: number }).inFlight;
}

/** Asserts the VM is whole: one active NIC, verify ok (in process). */
async function assertWhole(fx: Fixture, vm: string): Promise<void> {
  const list = await fx.cli(["--no-daemon", "list", "--vm", vm]);
  assert.equal(list.code, 0, list.stderr);
  const nics = JSON.parse(list.stdout) as NicConfig[];
  assert.deepEqual(nics.map((n) => [n.index, n.state]), [[0, "active"]]);
  const v = await fx.cli(["--no-daemon", "verify", vm]);
  assert.equal(v.code, 0, `verify ${vm}: ${v.stdout}${v.stderr}`);
  assert.ok(
    (await fx.leasedIps()).includes(nics[0].ips[0].address),
    "its lease",
  );
}

rootTest(
  "serve: a client that disconnects mid-add does not abort it; SIGTERM lets the add finish, answers it, then exits 0 and removes the socket",
  async (t) => {
    const fx = await makeFixture("inf", { octet: 166 });
    const dir = await socketDir();
    try {
      const log = join(fx.dir, "hooks.log");
      const after = join(fx.dir, "after.log");
      await timingHook(fx, { events: ["beforeAdd"], sleepS: 2, log });
      await writeScript(
        fx.hooksDir,
        "60-after",
        `# vmnic-events: afterAdd\ncat > /dev/null\necho "$PPID" >> ${after}`,
      );
      const socket = at(dir, "vmnic.sock");

      await t.step("a client that disconnects mid-add", async () => {
        await killDaemons();
        const daemon = await startDaemon(fx, { socket });
        const client = curlAdd(socket, "vmD");
        await hookStarted(log, "vmD");
        client.kill("SIGKILL");
        const gone = await client.output();
        assert.equal(gone.signal, "SIGKILL");
        assert.equal(await inFlight(daemon), 1, "the add still runs");
        for (let i = 0; i < 400 && await inFlight(daemon) > 0; i++) {
          await sleep(50);
        }
        assert.equal(await inFlight(daemon), 0, "the add ended");
        assert.deepEqual(
          (await Deno.readTextFile(after)).trim().split("\n"),
          [String(daemon.pid)],
          "afterAdd ran, in the daemon",
        );
        await assertWhole(fx, "vmD");
        assert.deepEqual(await daemon.stop(), { code: 0, signal: null });
      });

      await t.step("SIGTERM with an add in flight", async () => {
        await killDaemons();
        const daemon = await startDaemon(fx, { socket });
        const client = curlAdd(socket, "vmE");
        await hookStarted(log, "vmE");
        daemon.signal("SIGTERM");
        await sleep(200);
        // No new connection is taken while it drains.
        const late = await curl(socket, "GET", "/v1/health");
        assert.notEqual(late.code, 0, `a request after SIGTERM: ${late.text}`);
        const out = await client.output();
        assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
        const reply = parseReply(out.stdout, true);
        assert.equal(reply?.status, 200, reply?.text);
        const nics = JSON.parse(reply!.text) as NicConfig[];
        assert.deepEqual(
          nics.map((n) => [n.vmId, n.index, n.state]),
          [["vmE", 0, "active"]],
        );
        const exit = await daemon.exited;
        assert.deepEqual(exit, { code: 0, signal: null }, daemon.log());
        assert.match(daemon.log(), /draining 1 request\(s\)/);
        assert.equal(
          daemon.stdout().trim(),
          `vmnic serve: stopped (${socket})`,
        );
        await assert.rejects(Deno.lstat(socket), Deno.errors.NotFound);
        await assertWhole(fx, "vmE");
      });
    } finally {
      await killDaemons();
      await fx.cleanup();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
