/**
 * `vmnic serve` runs operations on one VM in order and on different VMs in
 * parallel (issue #10 §2), and its per-VM order holds against a CLI working
 * in process beside it. An executable hook notes when each add's
 * `beforeAdd` starts and ends (and which process ran it), sleeping in
 * between: two concurrent requests for one VM never overlap; for two VMs
 * they do.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { rootTest } from "../support/harness.ts";
import { makeFixture, runCli } from "../provider/_fixture.ts";
import type { NicConfig } from "../../src/provider/types.ts";
import { at, curl, killDaemons, socketDir, startDaemon } from "./_daemon.ts";
import { hookMarks, span, timingHook } from "./_hooks.ts";

const SLEEP_S = 3;

rootTest(
  "serve: concurrent requests for one VM run one after the other, for two VMs at once, and in order with a CLI beside it",
  async (t) => {
    const fx = await makeFixture("ord", { octet: 165 });
    const dir = await socketDir();
    try {
      const log = join(fx.dir, "hooks.log");
      await timingHook(fx, { events: ["beforeAdd"], sleepS: SLEEP_S, log });
      const socket = at(dir, "vmnic.sock");
      const daemon = await startDaemon(fx, { socket });
      const add = async (vm: string, body: unknown) => {
        const r = await curl(socket, "POST", `/v1/vms/${vm}/nics`, { body });
        assert.equal(r.status, 200, `${vm}: ${r.status} ${r.text}`);
        return r.json as NicConfig[];
      };

      await t.step("one VM: one after the other", async () => {
        const [a, b] = await Promise.all([
          add("vmA", { index: 0 }),
          add("vmA", { index: 1 }),
        ]);
        assert.deepEqual([a[0].index, b[0].index], [0, 1]);
        const marks = await hookMarks(log);
        const [s0, e0] = span(marks, "vmA", 0);
        const [s1, e1] = span(marks, "vmA", 1);
        assert.ok(
          e0 <= s1 || e1 <= s0,
          `the two adds of vmA overlapped: [${s0}, ${e0}] and [${s1}, ${e1}]`,
        );
        assert.ok(
          marks.every((m) => m.parent === daemon.pid),
          "the daemon ran the hooks",
        );
      });

      await t.step("two VMs: at once", async () => {
        const start = performance.now();
        await Promise.all([add("vmB", { nics: 1 }), add("vmC", { nics: 1 })]);
        const wall = (performance.now() - start) / 1000;
        const marks = await hookMarks(log);
        const [sb, eb] = span(marks, "vmB", 0);
        const [sc, ec] = span(marks, "vmC", 0);
        assert.ok(
          Math.max(sb, sc) < Math.min(eb, ec),
          `the adds of vmB and vmC did not overlap: [${sb}, ${eb}] and [${sc}, ${ec}]`,
        );
        assert.ok(wall < 2 * SLEEP_S, `both took ${wall} s`);
      });

      await t.step(
        "one VM, the daemon and a CLI in process: one after the other",
        async () => {
          const [viaDaemon, cli] = await Promise.all([
            add("vmA", { index: 2 }),
            runCli([
              ...fx.flags,
              "--json",
              "--no-daemon",
              "add",
              "vmA",
              "--index",
              "3",
            ]),
          ]);
          assert.equal(cli.code, 0, cli.stderr);
          assert.equal(viaDaemon[0].index, 2);
          assert.equal((JSON.parse(cli.stdout) as NicConfig[])[0].index, 3);
          const marks = await hookMarks(log);
          const [s2, e2] = span(marks, "vmA", 2);
          const [s3, e3] = span(marks, "vmA", 3);
          assert.ok(
            e2 <= s3 || e3 <= s2,
            `the daemon's and the CLI's adds of vmA overlapped: [${s2}, ${e2}] and [${s3}, ${e3}]`,
          );
          const by = (i: number) =>
            marks.find((m) => m.vmId === "vmA" && m.index === i)!.parent;
          assert.equal(by(2), daemon.pid, "the daemon ran NIC 2's hook");
          assert.notEqual(by(3), daemon.pid, "the CLI ran NIC 3's hook");
        },
      );

      const vms = await curl(socket, "GET", "/v1/vms");
      assert.deepEqual(
        (vms.json as { vmId: string; nics: { state: string }[] }[]).map((
          v,
        ) => [v.vmId, v.nics.map((n) => n.state)]),
        [
          ["vmA", ["active", "active", "active", "active"]],
          ["vmB", ["active"]],
          ["vmC", ["active"]],
        ],
      );
      assert.deepEqual(await daemon.stop(), { code: 0, signal: null });
    } finally {
      await killDaemons();
      await fx.cleanup();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
