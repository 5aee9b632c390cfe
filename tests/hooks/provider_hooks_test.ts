/**
 * Hooks around every NIC add and remove, through the real provider (and the
 * CLI as a process): real netns, real CNI plugins, real SQLite, real hook
 * executables in a root-owned hooks dir. Each test has its own netns
 * prefix, temp dirs, bridge and subnet, and removes everything afterwards.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { CniProvider } from "../../src/provider/provider.ts";
import { GcOrchestrator } from "../../src/provider/gc_orchestrator.ts";
import {
  defineHook,
  type HookContext,
  HookError,
  type HookInfo,
  HookSecurityError,
  type TsHook,
} from "../../src/hooks/mod.ts";
import type { NicConfig } from "../../src/provider/types.ts";
import { tsHooks as registryHooks } from "../../hooks/registry.ts";
import { rootTest, run } from "../support/harness.ts";
import {
  type Fixture,
  linksOf,
  makeFixture,
  vethsOnBridge,
} from "../provider/_fixture.ts";
import { isAlive, readLines, writeScript } from "./hook_fixtures.ts";

/** Second octet of this file's test subnets (10.231.x.0/24). */
const OCTET = 231;

/**
 * A fixture with a root-owned 0755 hooks dir. Afterwards the hooks dir goes
 * first (so no test hook can veto the cleanup), then every VM, netns, the
 * bridge and the temp dir.
 */
async function withHookFixture(
  tag: string,
  fn: (fx: Fixture) => Promise<void>,
): Promise<void> {
  const fx = await makeFixture(tag, { octet: OCTET });
  try {
    await Deno.mkdir(fx.hooksDir);
    await Deno.chmod(fx.hooksDir, 0o755);
    await fn(fx);
  } finally {
    await Deno.remove(fx.hooksDir, { recursive: true }).catch(() => {});
    await fx.cleanup();
  }
}

/** A provider on the fixture running `tsHooks` (and the hooks dir's). */
function openProvider(
  fx: Fixture,
  tsHooks: Record<string, TsHook> = {},
): Promise<CniProvider> {
  return CniProvider.open({ ...fx.config, tsHooks: true }, { tsHooks });
}

/** Runs `fn` with env vars set (`undefined`: unset), restoring them after. */
async function withEnv(
  vars: Record<string, string | undefined>,
  fn: () => Promise<void>,
): Promise<void> {
  const old = Object.fromEntries(
    Object.keys(vars).map((k) => [k, Deno.env.get(k)]),
  );
  const set = (k: string, v: string | undefined) =>
    v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  for (const [k, v] of Object.entries(vars)) set(k, v);
  try {
    await fn();
  } finally {
    for (const [k, v] of Object.entries(old)) set(k, v);
  }
}

/** The rejection of `p`, failing when it resolves. */
async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof Error, `rejected with a non-Error: ${e}`);
    return e;
  }
  assert.fail("expected the operation to fail");
}

/** The chain of `cause`s of an error, the error first. */
function causes(e: unknown): unknown[] {
  const out: unknown[] = [];
  for (let c = e; c !== undefined && out.length < 10; c = (c as Error).cause) {
    out.push(c);
  }
  return out;
}

/** The HookError in `e`'s cause chain, failing when there is none. */
function hookErrorIn(e: unknown): HookError {
  const found = causes(e).find((c) => c instanceof HookError);
  assert.ok(found, `no HookError in the cause chain of ${e}`);
  return found as HookError;
}

/** Asserts the VM left nothing: no netns, no lease, no record, no host veth. */
async function assertNothingLeft(fx: Fixture, p: CniProvider, vmId: string) {
  assert.deepEqual(await fx.netns(), [], "no netns with the prefix");
  assert.deepEqual(await fx.leasedIps(), [], "no host-local IP file");
  assert.deepEqual(await p.list({ vmId }), [], "no record");
  assert.deepEqual(await vethsOnBridge(fx.bridge), [], "no veth on the bridge");
}

/** One audit_log line. */
interface AuditLine {
  timestamp: string;
  event: string;
  operation: string;
  vmId: string;
  index: number;
  tap: string | null;
  mac: string | null;
  ips: NicConfig["ips"];
}

/** A shell hook appending `<event> <context JSON>` to `log`. */
function recordingHook(log: string, header = ""): string {
  return `${header}printf '%s %s\\n' "$1" "$(cat)" >> ${log}`;
}

/** Lines `<event> <json>` of a recording hook, parsed. */
async function recorded(
  log: string,
): Promise<{ argv1: string; ctx: HookContext }[]> {
  return (await readLines(log)).map((line) => {
    const space = line.indexOf(" ");
    return {
      argv1: line.slice(0, space),
      ctx: JSON.parse(line.slice(space + 1)),
    };
  });
}

rootTest(
  "audit_log sees every event once per NIC, with the documented fields (add 2, remove 1, delete)",
  async () => {
    await withHookFixture("au", async (fx) => {
      const log = join(fx.dir, "audit.jsonl");
      await withEnv(
        { VMNIC_AUDIT_LOG: log, VMNIC_DENY_POLICY_FILE: undefined },
        async () => {
          const p = await openProvider(fx, registryHooks);
          try {
            const vm = "vm-audit";
            const nics = await p.add(vm, { cpu: 2 }, {}, {});
            assert.equal(nics.length, 2);
            const ns = fx.prefix + vm;
            const links = await linksOf(ns);
            await p.remove(vm, 1);
            const res = await p.delete([vm]);
            assert.deepEqual(res, { deleted: [vm], errors: [], warnings: [] });

            const lines: AuditLine[] = (await readLines(log)).map((l) =>
              JSON.parse(l)
            );
            assert.deepEqual(
              lines.map((l) => `${l.event}/${l.operation}/${l.index}`),
              [
                "beforeAdd/add/0",
                "beforeAdd/add/1",
                "afterAdd/add/0",
                "afterAdd/add/1",
                "beforeRemove/remove/1",
                "afterRemove/remove/1",
                "beforeRemove/delete/0",
                "afterRemove/delete/0",
              ],
              "each event once per NIC, before* of all NICs before any change",
            );
            for (const l of lines) {
              assert.equal(l.vmId, vm);
              assert.ok(!Number.isNaN(Date.parse(l.timestamp)));
              assert.equal(l.tap, `tap${l.index}`);
              if (l.event === "beforeAdd") {
                assert.equal(l.mac, null, "no MAC is known before an add");
                assert.deepEqual(l.ips, [], "no IP is known before an add");
                continue;
              }
              // After the add (and at removal), the NIC's real MAC and IPs.
              const nic = nics[l.index];
              assert.equal(l.mac, nic.mac);
              assert.equal(
                l.mac,
                links.get(`eth${l.index}`)?.address,
                "the MAC on the veth in the VM's netns",
              );
              assert.deepEqual(l.ips, nic.ips);
              assert.equal(l.ips.length, 1);
              assert.equal(l.ips[0].version, 4);
              assert.match(l.ips[0].address, /^10\.231\.\d+\.\d+$/);
            }
          } finally {
            p.close();
          }
        },
      );
    });
  },
);

rootTest(
  "an executable hook gets the event as argv[1] and the context JSON on stdin (CLI process)",
  async () => {
    await withHookFixture("ex", async (fx) => {
      const log = join(fx.dir, "exec.log");
      await writeScript(fx.hooksDir, "50-record", recordingHook(log));
      const vm = "vm-exec";
      const [nic] = await fx.cliOk<NicConfig[]>(["add", vm, "--cpu", "2"]);
      await fx.cliOk(["remove", vm, "0"]);

      const calls = await recorded(log);
      assert.deepEqual(calls.map((c) => c.argv1), [
        "beforeAdd",
        "afterAdd",
        "beforeRemove",
        "afterRemove",
      ]);
      const netnsPath = `/var/run/netns/${fx.prefix}${vm}`;
      for (const { argv1, ctx } of calls) {
        assert.equal(ctx.event, argv1, "argv[1] and the context agree");
        assert.equal(ctx.operation, argv1.endsWith("Add") ? "add" : "remove");
        assert.equal(ctx.vmId, vm);
        assert.equal(ctx.index, 0);
        assert.equal(ctx.ifName, "eth0");
        assert.equal(ctx.netnsPath, netnsPath);
        assert.equal(ctx.network, fx.network);
        assert.equal(ctx.numQueues, 2);
      }
      const [before, after, beforeRm, afterRm] = calls.map((c) => c.ctx);
      for (const absent of ["mac", "ips", "cniResult", "mtu"] as const) {
        assert.ok(!(absent in before), `beforeAdd has no ${absent}`);
      }
      assert.equal(after.mac, nic.mac);
      assert.deepEqual(after.ips, nic.ips);
      assert.equal(after.tap, nic.tap);
      assert.equal(after.mtu, nic.mtu);
      const cni = after.cniResult as { ips: { address: string }[] };
      assert.equal(cni.ips[0].address, `${nic.ips[0].address}/24`);
      for (const ctx of [beforeRm, afterRm]) {
        assert.equal(ctx.mac, nic.mac);
        assert.deepEqual(ctx.ips, nic.ips);
      }
    });
  },
);

rootTest(
  "a failing beforeAdd executable vetoes the add: error names it, nothing is left (library and CLI)",
  async () => {
    await withHookFixture("ve", async (fx) => {
      const log = join(fx.dir, "exec.log");
      await writeScript(
        fx.hooksDir,
        "10-veto",
        "# vmnic-events: beforeAdd\necho 'VM not allowed here' >&2\nexit 1",
      );
      await writeScript(fx.hooksDir, "20-record", recordingHook(log));
      const p = await openProvider(fx);
      try {
        const err = await rejection(p.add("vm-veto", {}, {}, {}));
        assert.match(err.message, /10-veto/);
        assert.match(err.message, /VM not allowed here/, "its stderr shown");
        const hookErr = hookErrorIn(err);
        assert.equal(hookErr.hook, "10-veto");
        assert.equal(hookErr.event, "beforeAdd");
        assert.equal(hookErr.exitCode, 1);
        await assertNothingLeft(fx, p, "vm-veto");
        assert.deepEqual(
          await readLines(log),
          [],
          "no later hook ran after the veto",
        );
      } finally {
        p.close();
      }

      const r = await fx.cli(["add", "vm-veto-cli"]);
      assert.equal(r.code, 1, r.stderr);
      const { error } = JSON.parse(r.stderr);
      assert.match(error.message, /10-veto/);
      const p2 = await openProvider(fx);
      try {
        await assertNothingLeft(fx, p2, "vm-veto-cli");
      } finally {
        p2.close();
      }
    });
  },
);

rootTest(
  "the deny_policy TS hook vetoes a denied VM id and lets another through",
  async () => {
    await withHookFixture("dp", async (fx) => {
      const policy = join(fx.dir, "policy.json");
      await Deno.writeTextFile(
        policy,
        JSON.stringify({ deny: { [fx.network]: ["quarantine-*"] } }),
      );
      await withEnv(
        { VMNIC_DENY_POLICY_FILE: policy, VMNIC_AUDIT_LOG: undefined },
        async () => {
          const p = await openProvider(fx, registryHooks);
          try {
            const err = await rejection(p.add("quarantine-7", {}));
            assert.match(err.message, /deny_policy\.ts/);
            assert.match(err.message, /quarantine-\*/, "names the rule");
            assert.equal(hookErrorIn(err).hook, "deny_policy.ts");
            await assertNothingLeft(fx, p, "quarantine-7");

            const [nic] = await p.add("web-7", {});
            assert.equal(nic.vmId, "web-7");
            assert.deepEqual(await fx.netns(), ["web-7"]);
            assert.deepEqual(await fx.leasedIps(), [nic.ips[0].address]);
          } finally {
            p.close();
          }
        },
      );
    });
  },
);

rootTest(
  "a failing beforeRemove hook vetoes remove and delete: the NIC stays intact",
  async () => {
    await withHookFixture("br", async (fx) => {
      const p = await openProvider(fx);
      try {
        const vm = "vm-keep";
        const [nic] = await p.add(vm, {});
        await writeScript(
          fx.hooksDir,
          "10-keep",
          "# vmnic-events: beforeRemove\nexit 3",
        );
        const err = await rejection(p.remove(vm, 0));
        assert.match(err.message, /10-keep/);
        const res = await p.delete([vm]);
        assert.deepEqual(res.deleted, []);
        assert.equal(res.errors.length, 1);
        assert.match(res.errors[0].error, /10-keep/);

        assert.deepEqual((await p.list({ vmId: vm })).map((n) => n.id), [
          nic.id,
        ]);
        assert.ok((await linksOf(fx.prefix + vm)).has("tap0"), "TAP kept");
        assert.deepEqual(await fx.leasedIps(), [nic.ips[0].address]);
        assert.equal((await p.verify(vm)).ok, true);
      } finally {
        p.close();
      }
    });
  },
);

rootTest(
  "a failing afterAdd hook rolls back every NIC of the call, naming the hook",
  async () => {
    await withHookFixture("aa", async (fx) => {
      const log = join(fx.dir, "exec.log");
      // Fails for the second NIC only: the first, already through afterAdd,
      // must be rolled back too.
      await writeScript(
        fx.hooksDir,
        "40-check",
        [
          "# vmnic-events: afterAdd",
          'ctx=$(cat); echo "$1 $ctx" >> ' + log,
          'case "$ctx" in *\'"index":1,\'*) echo "NIC 1 rejected" >&2; exit 1;; esac',
        ].join("\n"),
      );
      const p = await openProvider(fx);
      try {
        const err = await rejection(p.add("vm-aa", {}, {}, {}));
        assert.match(err.message, /40-check/);
        assert.match(err.message, /NIC 1 rejected/);
        const hookErr = hookErrorIn(err);
        assert.equal(hookErr.event, "afterAdd");
        assert.equal((await readLines(log)).length, 2, "afterAdd ran per NIC");
        await assertNothingLeft(fx, p, "vm-aa");
      } finally {
        p.close();
      }
    });
  },
);

rootTest(
  "a failing afterRemove hook is reported, and the removal stands",
  async () => {
    await withHookFixture("ar", async (fx) => {
      await writeScript(
        fx.hooksDir,
        "60-after",
        "# vmnic-events: afterRemove\necho 'cannot notify' >&2\nexit 1",
      );
      const p = await openProvider(fx);
      try {
        const vm = "vm-ar";
        await p.add(vm, {}, {}, {});
        const ns = fx.prefix + vm;

        // The removal stands: remove succeeds, the hook's failure is a
        // warning of its result (docs/cli.md: `remove` JSON).
        const removed = await p.remove(vm, 0);
        assert.equal(removed.vmId, vm);
        assert.deepEqual(removed.removed, [0]);
        assert.deepEqual(removed.absent, []);
        assert.equal(removed.warnings.length, 1, removed.warnings.join("\n"));
        assert.match(removed.warnings[0], /60-after/);
        assert.match(removed.warnings[0], /cannot notify/);
        assert.deepEqual((await p.list({ vmId: vm })).map((n) => n.index), [1]);
        const links = await linksOf(ns);
        assert.ok(!links.has("tap0"), "TAP of the removed NIC gone");
        assert.ok(!links.has("eth0"), "veth of the removed NIC gone");
        assert.ok(links.has("tap1"), "the other NIC untouched");
        assert.equal((await fx.leasedIps()).length, 1, "its IP released");

        // Fully cleaned despite the hook: listed as deleted, the hook's
        // failure reported beside it.
        const res = await p.delete([vm]);
        assert.deepEqual(res.deleted, [vm]);
        assert.deepEqual(res.errors, []);
        assert.equal(res.warnings.length, 1);
        assert.equal(res.warnings[0].vmId, vm);
        assert.match(res.warnings[0].warning, /60-after/);
        assert.deepEqual(await p.list({ vmId: vm }), [], "records gone");
        assert.deepEqual(await fx.netns(), [], "netns gone");
        assert.deepEqual(await fx.leasedIps(), [], "IPs released");
      } finally {
        p.close();
      }
    });
  },
);

rootTest(
  "a hanging exec hook is killed at its vmnic-timeout and vetoes the add",
  async () => {
    await withHookFixture("to", async (fx) => {
      const shPid = join(fx.dir, "sh.pid");
      const sleepPid = join(fx.dir, "sleep.pid");
      await writeScript(
        fx.hooksDir,
        "10-hang",
        [
          "# vmnic-timeout: 1",
          "# vmnic-events: beforeAdd",
          `echo $$ > ${shPid}`,
          "sleep 60 &",
          `echo $! > ${sleepPid}`,
          "wait",
        ].join("\n"),
      );
      const p = await openProvider(fx);
      try {
        const start = performance.now();
        const err = await rejection(p.add("vm-hang", {}));
        const elapsed = performance.now() - start;
        assert.ok(elapsed >= 900, `waited for the timeout (${elapsed} ms)`);
        assert.ok(elapsed < 5000, `killed within its timeout (${elapsed} ms)`);
        assert.match(err.message, /10-hang/);
        assert.match(err.message, /timed out after 1000 ms/);
        for (const file of [shPid, sleepPid]) {
          const pid = Number((await Deno.readTextFile(file)).trim());
          assert.ok(pid > 0);
          assert.equal(await isAlive(pid), false, `${file} ${pid} killed`);
        }
        await assertNothingLeft(fx, p, "vm-hang");
      } finally {
        p.close();
      }
    });
  },
);

rootTest(
  "an insecure hooks dir (0777) refuses the add, naming the dir, and runs nothing",
  async () => {
    await withHookFixture("in", async (fx) => {
      const marker = join(fx.dir, "ran");
      await writeScript(fx.hooksDir, "10-touch", `touch ${marker}`);
      await Deno.chmod(fx.hooksDir, 0o777);
      const p = await openProvider(fx);
      try {
        const err = await rejection(p.add("vm-insecure", {}));
        const sec = causes(err).find((c) => c instanceof HookSecurityError);
        assert.ok(sec, `a HookSecurityError, got ${err}`);
        assert.ok(
          err.message.includes(fx.hooksDir),
          `${err.message} names ${fx.hooksDir}`,
        );
        assert.match(err.message, /world-writable/);
        await assertNothingLeft(fx, p, "vm-insecure");
        assert.equal(
          await Deno.stat(marker).then(() => true, () => false),
          false,
          "no hook ran",
        );
      } finally {
        p.close();
      }
      const r = await fx.cli(["hooks"]);
      assert.equal(r.code, 1);
      assert.ok(r.stderr.includes(fx.hooksDir), r.stderr);
    });
  },
);

rootTest(
  "TS and exec hooks run in one file-name order around add and remove",
  async () => {
    await withHookFixture("or", async (fx) => {
      const log = join(fx.dir, "order.log");
      await writeScript(fx.hooksDir, "10-a", `echo "10-a $1" >> ${log}`);
      await writeScript(fx.hooksDir, "30-b", `echo "30-b $1" >> ${log}`);
      const tsHook = defineHook({
        async run(ctx) {
          await Deno.writeTextFile(log, `20_x.ts ${ctx.event}\n`, {
            append: true,
          });
        },
      });
      const p = await openProvider(fx, { "20_x.ts": tsHook });
      try {
        await p.add("vm-order", {});
        await p.remove("vm-order", 0);
      } finally {
        p.close();
      }
      const expected = ["beforeAdd", "afterAdd", "beforeRemove", "afterRemove"]
        .flatMap((e) => [`10-a ${e}`, `20_x.ts ${e}`, `30-b ${e}`]);
      assert.deepEqual(await readLines(log), expected);
    });
  },
);

rootTest(
  "vmnic hooks --json lists the registry's TS hooks and the dir's executables",
  async () => {
    await withHookFixture("ls", async (fx) => {
      await writeScript(
        fx.hooksDir,
        "10-a",
        "# vmnic-events: beforeAdd,afterAdd\n# vmnic-timeout: 7\nexit 0",
      );
      await writeScript(fx.hooksDir, "zz-b", "exit 0");
      const hooks = await fx.cliOk<HookInfo[]>(["hooks"]);
      const all = ["beforeAdd", "afterAdd", "beforeRemove", "afterRemove"];
      assert.deepEqual(
        hooks.map((h) => ({ name: h.name, kind: h.kind, events: h.events })),
        [
          { name: "10-a", kind: "exec", events: ["beforeAdd", "afterAdd"] },
          { name: "audit_log.ts", kind: "ts", events: all },
          { name: "deny_policy.ts", kind: "ts", events: ["beforeAdd"] },
          { name: "zz-b", kind: "exec", events: all },
        ],
      );
      const byName = new Map(hooks.map((h) => [h.name, h]));
      assert.equal(byName.get("10-a")?.path, join(fx.hooksDir, "10-a"));
      assert.equal(byName.get("10-a")?.timeoutMs, 7000);
      assert.equal(byName.get("zz-b")?.path, join(fx.hooksDir, "zz-b"));
      assert.equal(byName.get("audit_log.ts")?.path, undefined);
      assert.deepEqual(
        hooks.filter((h) => h.kind === "ts").map((h) => h.name),
        Object.keys(registryHooks).sort(),
        "every registry hook is listed",
      );
    });
  },
);

rootTest(
  "recover's rebuild runs the remove and add hooks with operation recover; a veto keeps the record for a retry",
  async () => {
    await withHookFixture("rc", async (fx) => {
      const log = join(fx.dir, "exec.log");
      const p = await openProvider(fx);
      try {
        const vm = "vm-rc";
        const [nic] = await p.add(vm, {});
        // A host reboot: the netns (and with it veth and TAP) is gone.
        await run("ip", ["netns", "del", fx.prefix + vm]);
        await writeScript(
          fx.hooksDir,
          "10-veto",
          "# vmnic-events: beforeAdd\nexit 1",
        );
        const vetoed = await p.recover(vm);
        assert.deepEqual(vetoed.rebuilt, [], "nothing rebuilt");
        assert.deepEqual(vetoed.problems.map((x) => x.index), [0]);
        assert.match(vetoed.problems[0].error, /10-veto/);
        // `nics` lists the VM's records: the vetoed NIC is still there.
        assert.deepEqual(vetoed.nics.map((n) => n.id), [nic.id]);
        const kept = await p.list({ vmId: vm });
        assert.equal(kept.length, 1, "the record survives the veto");
        assert.equal(kept[0].id, nic.id);
        assert.equal(kept[0].mac, nic.mac);
        assert.deepEqual(kept[0].ips, nic.ips);

        await Deno.remove(join(fx.hooksDir, "10-veto"));
        await writeScript(fx.hooksDir, "20-record", recordingHook(log));
        const done = await p.recover(vm);
        assert.deepEqual(done.problems, []);
        assert.deepEqual(done.rebuilt, [0]);
        assert.equal(done.nics.length, 1);
        assert.equal(done.nics[0].id, nic.id, "same NIC id");
        assert.equal(done.nics[0].state, "active");
        assert.equal(done.nics[0].mac, nic.mac);
        assert.deepEqual(done.nics[0].ips, nic.ips);
        // docs/state-machine.md, "Recover": a rebuilt NIC fires its
        // beforeRemove, afterRemove, beforeAdd and afterAdd hooks.
        const calls = await recorded(log);
        assert.deepEqual(calls.map((c) => c.argv1), [
          "beforeRemove",
          "beforeAdd",
          "afterRemove",
          "afterAdd",
        ]);
        for (const { ctx } of calls) {
          assert.equal(ctx.operation, "recover");
          assert.equal(ctx.index, 0);
          assert.equal(ctx.mac, nic.mac, "the persisted MAC");
          assert.deepEqual(ctx.ips, nic.ips, "the IPs re-requested");
        }
      } finally {
        p.close();
      }
    });
  },
);

rootTest(
  "gc runs the remove hooks with operation gc; a beforeRemove veto keeps the VM",
  async () => {
    await withHookFixture("gc", async (fx) => {
      const log = join(fx.dir, "exec.log");
      const p = await openProvider(fx);
      try {
        const [kept] = await p.add("vm-kept", {});
        await p.add("vm-gone", {});
        await writeScript(fx.hooksDir, "20-record", recordingHook(log));
        await writeScript(
          fx.hooksDir,
          "10-guard",
          "# vmnic-events: beforeRemove\n" +
            `case "$(cat)" in *'"vmId":"vm-kept"'*) exit 1;; esac`,
        );
        const gc = new GcOrchestrator();
        gc.register(p.gcModule());
        const [report] = await gc.run([]);
        assert.deepEqual(report.collected, ["vm-gone"]);
        assert.deepEqual(report.errors.map((e) => e.id), ["vm-kept"]);
        assert.match(report.errors[0].error, /10-guard/);

        assert.deepEqual(await fx.netns(), ["vm-kept"]);
        assert.deepEqual((await p.list()).map((n) => n.id), [kept.id]);
        assert.deepEqual(await fx.leasedIps(), [kept.ips[0].address]);
        assert.deepEqual(
          (await recorded(log)).map((c) =>
            `${c.argv1}/${c.ctx.operation}/${c.ctx.vmId}`
          ),
          ["beforeRemove/gc/vm-gone", "afterRemove/gc/vm-gone"],
        );
      } finally {
        p.close();
      }
    });
  },
);
