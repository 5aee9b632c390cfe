/**
 * The provider's state machine (docs/state-machine.md) over the in-memory
 * kernel and plugins: every transition, every rollback, every crash point
 * and the way out of each, without root. The real-kernel tests beside this
 * file check the same promises against Linux and Debian's plugins.
 */
import assert from "node:assert/strict";
import {
  ConflictError,
  InterruptedError,
  InvalidInputError,
  OperationError,
  RecordsLostError,
} from "../../src/provider/errors.ts";
import { FAULT_POINTS, type FaultPoint } from "../../src/provider/faults.ts";
import { GcOrchestrator } from "../../src/provider/gc_orchestrator.ts";
import type { CniProvider } from "../../src/provider/provider.ts";
import { Errno } from "../../src/sys/errno.ts";
import { tagNetns } from "../../src/wiring/nic.ts";
import { HOST_NETNS } from "../support/fake_kernel.ts";
import {
  bridgeList,
  type FakeWorld,
  fakeWorld,
} from "../support/fake_provider.ts";

/** Runs `fn` in a fresh world and disposes of it. */
async function inWorld(fn: (w: FakeWorld) => Promise<void>): Promise<void> {
  const w = await fakeWorld();
  try {
    await fn(w);
  } finally {
    await w.dispose();
  }
}

/** Opens a provider, runs `fn`, closes it. */
async function withProvider<T>(
  w: FakeWorld,
  fn: (p: CniProvider) => Promise<T>,
): Promise<T> {
  const p = await w.open();
  try {
    return await fn(p);
  } finally {
    p.close();
  }
}

Deno.test("add makes a recorded, plumbed, announced NIC; delete leaves nothing", async () => {
  await inWorld(async (w) => {
    await withProvider(w, async (p) => {
      const [nic] = await p.add("vm1", { cpu: 2 });
      assert.equal(nic.state, "active");
      assert.equal(nic.index, 0);
      const ns = nic.netnsPath;
      assert.equal(w.kernel.link(ns, "eth0")?.mac, nic.mac);
      assert.equal(w.kernel.link(ns, "tap0")?.kind, "tun");
      assert.equal(w.kernel.filters(ns, "eth0").length, 1);
      // The default policy: the guest's frames through an allow-list.
      assert.ok(w.kernel.filters(ns, "tap0").length > 1);
      assert.deepEqual(w.plugins.leases().map((l) => l.address), [
        nic.ips[0].address,
      ]);
      assert.deepEqual(w.hooks.map((h) => h.event), ["beforeAdd", "afterAdd"]);
      assert.equal((await p.verify("vm1")).ok, true);
      const r = await p.delete(["vm1"]);
      assert.deepEqual(r, { deleted: ["vm1"], errors: [], warnings: [] });
      assert.deepEqual(
        w.hooks.map((h) => h.event),
        ["beforeAdd", "afterAdd", "beforeRemove", "afterRemove"],
      );
    });
    assert.deepEqual(await w.leaks(), []);
  });
});

Deno.test("add is idempotent: a retried or doubled add returns the same NIC", async () => {
  await inWorld(async (w) => {
    const [a, b] = [await w.open(), await w.open()];
    const [[x], [y]] = await Promise.all([
      a.add("vm1", {}),
      b.add("vm1", {}),
    ]);
    assert.deepEqual(x, y);
    assert.deepEqual(await a.add("vm1", {}), [x]);
    assert.equal(w.plugins.callsOf("ADD").length, 1, "one CNI ADD in all");
    const two = await a.add("vm1", {}, {}, {});
    assert.deepEqual(two[0], x);
    assert.equal(two[1].index, 1);
    // NIC 1 joined the VM's network without naming it.
    assert.equal(two[1].network, x.network);
    assert.equal(w.plugins.leases().length, 2);
  });
});

Deno.test("add refuses, before anything changes, what contradicts or cannot be asked", async () => {
  await inWorld(async (w) => {
    await w.conflist("v4only", bridgeList("v4only"));
    await w.conflist(
      "dual",
      bridgeList("dual", { subnets: ["10.98.0.0/24", "fd00:98::/64"] }),
    );
    await withProvider(w, async (p) => {
      const [nic] = await p.add("vm1", {}, { network: "v4only" });
      const before = { calls: w.plugins.calls.length, hooks: w.hooks.length };
      const refusals: [
        () => Promise<unknown>,
        new (...a: never[]) => Error,
        RegExp,
      ][] = [
        [() => p.add("vm1", {}, { network: "dual" }), ConflictError, /network/],
        [() => p.add("vm1", { cpu: 4 }), ConflictError, /queues/],
        [
          () =>
            p.add("vm2", {}, {
              network: "dual",
              ips: ["10.98.0.9", "fd00:98::9"],
            }),
          InvalidInputError,
          /"ips" capability/,
        ],
        [
          () => p.add("vm2", {}, { network: "v4only", mac: nic.mac }),
          ConflictError,
          /MAC .* is NIC 0 of VM vm1/,
        ],
        [
          () => p.add("vm2", {}, { index: 1 }, { index: 1 }),
          InvalidInputError,
          /twice/,
        ],
        [
          () => p.add("vm2", {}, { network: "nope" }),
          InvalidInputError,
          /unknown network/,
        ],
        [
          () => p.add("vm2", { queueSize: 300 }),
          InvalidInputError,
          /queueSize 300: allowed a power of two/,
        ],
      ];
      for (const [call, cls, what] of refusals) {
        await assert.rejects(call(), (e: unknown) => {
          assert.ok(e instanceof cls, `${e}`);
          assert.match((e as Error).message, what);
          return true;
        });
      }
      assert.equal(w.plugins.calls.length, before.calls, "no plugin ran");
      assert.equal(w.hooks.length, before.hooks, "no hook ran");
      assert.deepEqual((await p.vms()).map((v) => v.vmId), ["vm1"]);
      assert.deepEqual(w.kernel.netnsPaths(), [nic.netnsPath]);
    });
  });
});

Deno.test("a broken conflist that sorts first leaves no default: add refuses until it is fixed or a network is named", async () => {
  await inWorld(async (w) => {
    await w.conflist("20-good", bridgeList("good"));
    const confDir = w.config.cniConfDir!;
    await Deno.writeTextFile(`${confDir}/10-broken.conflist`, "{ not json");
    await withProvider(w, async (p) => {
      await assert.rejects(p.add("vm1", {}), (e: unknown) => {
        assert.ok(e instanceof OperationError, `${e}`);
        assert.match(
          (e as Error).message,
          /no default network: .*10-broken\.conflist sorts first/,
        );
        return true;
      });
      assert.equal(w.plugins.calls.length, 0, "no plugin ran");
      assert.deepEqual(w.kernel.netnsPaths(), []);
      const report = await p.networks();
      assert.deepEqual(report.networks.map((n) => [n.name, n.isDefault]), [
        ["good", false],
      ]);
      const [nic] = await p.add("vm1", {}, { network: "good" });
      assert.equal(nic.network, "good", "a named network still works");
    });
  });
});

Deno.test("a missing IPAM plugin is found missing before any plugin runs", async () => {
  await inWorld(async (w) => {
    w.plugins.uninstall("host-local");
    await withProvider(w, async (p) => {
      await assert.rejects(p.add("vm1", {}), /"host-local" not found/);
    });
    assert.equal(w.plugins.calls.length, 0, "bridge never ran");
    assert.deepEqual(await w.leaks(), []);
  });
});

Deno.test("add rolls back exactly what it made when any kernel step fails", async (t) => {
  const steps: [string, Parameters<FakeWorld["kernel"]["failNext"]>[0]][] = [
    ["netns creation", { op: "ensureNetns", errno: Errno.ENOSPC }],
    ["TAP creation", { op: "createTap", errno: Errno.ENOMEM }],
    ["TAP MTU", { op: "setlink", name: "tap0", skip: 1, errno: Errno.EINVAL }],
    ["veth ingress qdisc", {
      op: "newqdisc",
      name: "eth0",
      errno: Errno.ENOBUFS,
    }],
    ["second redirect", { op: "newtfilter", skip: 1, errno: Errno.EIO }],
    ["TAP up", { op: "setlink", name: "tap0", skip: 3, errno: Errno.EPERM }],
  ];
  for (const [what, rule] of steps) {
    await t.step(what, async () => {
      await inWorld(async (w) => {
        await withProvider(w, async (p) => {
          w.kernel.failNext(rule);
          await assert.rejects(
            p.add("vm1", {}),
            (e: unknown) =>
              e instanceof OperationError && /rolled back/.test(String(e)),
          );
          assert.equal(w.kernel.pendingFailures, 0, "the step was reached");
        });
        assert.deepEqual(await w.leaks(), []);
      });
    });
  }
  await t.step(
    "the second NIC of an add: the first goes too, hooks told",
    async () => {
      await inWorld(async (w) => {
        await withProvider(w, async (p) => {
          w.kernel.failNext({
            op: "createTap",
            name: "tap1",
            errno: Errno.EBUSY,
          });
          await assert.rejects(p.add("vm1", {}, {}, {}), /rolled back/);
        });
        assert.deepEqual(await w.leaks(), []);
      });
    },
  );
  await t.step(
    "a NIC added to an existing VM: the others and the netns stay",
    async () => {
      await inWorld(async (w) => {
        await withProvider(w, async (p) => {
          const [nic0] = await p.add("vm1", {});
          w.kernel.failNext({ op: "newqdisc", name: "eth1", errno: Errno.EIO });
          await assert.rejects(p.add("vm1", {}, { index: 1 }), /rolled back/);
          assert.deepEqual(await p.list(), [nic0]);
          assert.equal((await p.verify("vm1")).ok, true);
          assert.equal(w.plugins.leases().length, 1);
        });
      });
    },
  );
});

Deno.test("add rolls back on a plugin's failure and on a failing afterAdd hook; a beforeAdd veto makes nothing", async () => {
  await inWorld(async (w) => {
    await withProvider(w, async (p) => {
      w.plugins.failNext({ type: "bridge", command: "ADD", afterEffect: true });
      await assert.rejects(p.add("vm1", {}), /rolled back/);
      assert.deepEqual(await w.leaks(), []);

      // NIC 1's afterAdd fails: both NICs go; NIC 0's hooks, told of its
      // add, hear of its removal; NIC 1 was never announced.
      w.failHook("afterAdd", 1);
      const seen = w.hooks.length;
      await assert.rejects(
        p.add("vm1", {}, {}, {}),
        /test hook refuses afterAdd.*rolled back/,
      );
      assert.deepEqual(
        w.hooks.slice(seen).map((h) => `${h.event}/${h.index}`),
        [
          "beforeAdd/0",
          "beforeAdd/1",
          "afterAdd/0",
          "afterAdd/1",
          "afterRemove/0",
        ],
      );
      assert.deepEqual(await w.leaks(), []);

      w.failHook("beforeAdd");
      const calls = w.plugins.calls.length;
      await assert.rejects(p.add("vm1", {}), /test hook refuses beforeAdd/);
      assert.equal(w.plugins.calls.length, calls, "no plugin ran");
      assert.deepEqual(await w.leaks(), []);
    });
  });
});

Deno.test("a beforeRemove veto keeps the VM whole; --force overrides it with a warning", async () => {
  await inWorld(async (w) => {
    await withProvider(w, async (p) => {
      await p.add("vm1", {}, {}, {});
      w.failHook("beforeRemove", 1);
      await assert.rejects(
        p.remove("vm1", 1),
        /test hook refuses beforeRemove/,
      );
      w.failHook("beforeRemove", 1);
      const vetoed = await p.delete(["vm1"]);
      assert.deepEqual(vetoed.deleted, []);
      assert.match(
        vetoed.errors.map((x) => x.error).join(),
        /test hook refuses beforeRemove/,
      );
      assert.deepEqual(
        (await p.list({ vmId: "vm1" })).map((n) => n.state),
        ["active", "active"],
        "a veto tears nothing down",
      );
      assert.equal((await p.verify("vm1")).ok, true);
      w.failHook("beforeRemove", 0);
      const r = await p.delete(["vm1"], { force: true });
      assert.deepEqual(r.deleted, ["vm1"]);
      assert.match(
        r.warnings.map((x) => x.warning).join(),
        /NIC 0: beforeRemove overridden by --force: .*test hook refuses/,
      );
    });
    assert.deepEqual(await w.leaks(), []);
  });
});

Deno.test("a failing DEL leaves the NIC failed, with the error and the way out; a retry or --force ends it", async () => {
  await inWorld(async (w) => {
    await withProvider(w, async (p) => {
      await p.add("vm1", {}, {}, {});
      w.plugins.failNext({ type: "bridge", command: "DEL" });
      await assert.rejects(
        p.remove("vm1", 1),
        (e: unknown) =>
          e instanceof OperationError && /--force/.test(e.message),
      );
      const [, failed] = await p.list({ vmId: "vm1" });
      assert.equal(failed.state, "failed");
      assert.match(failed.error ?? "", /CNI DEL failed/);
      // A failed NIC blocks nothing else and is not re-added by a retry.
      await assert.rejects(p.add("vm1", {}, {}, {}), ConflictError);
      // The cause gone, a retry ends it.
      assert.deepEqual(
        await p.remove("vm1", 1),
        { vmId: "vm1", removed: [1], absent: [], warnings: [] },
      );
      // --force ends one whose DEL keeps failing, and says what may be left.
      w.plugins.failNext({ type: "bridge", command: "DEL", times: 10 });
      const r = await p.remove("vm1", 0, { force: true });
      assert.deepEqual(r.removed, [0]);
      assert.match(r.warnings.join(), /dropped by --force.*may still hold/);
      w.plugins.clearFailures();
      const ns = (await p.vms())[0].netnsPath;
      assert.equal(w.kernel.link(ns, "eth0"), null, "its veth went anyway");
    });
  });
});

Deno.test("delete of a VM whose DEL fails keeps it, failed; fixing the conflist helps; --force finishes", async () => {
  await inWorld(async (w) => {
    // What an IPAM typo does: ADD fails, and so does every DEL with it.
    const typo = bridgeList("typo");
    const plugin = (typo.plugins as Record<string, unknown>[])[0];
    plugin.ipam = {
      type: "host-local",
      rangez: [[{ subnet: "10.97.0.0/24" }]],
    };
    await w.conflist("typo", typo);
    await withProvider(w, async (p) => {
      w.plugins.failNext({ type: "bridge", command: "DEL", times: 2 });
      w.plugins.failNext({ type: "bridge", command: "ADD" });
      await assert.rejects(
        p.add("vm1", { network: "typo" }),
        /rollback incomplete.*delete --force/,
      );
      const [nic] = await p.list({ vmId: "vm1" });
      assert.equal(nic.state, "failed");
      assert.equal(
        w.kernel.netnsPaths().length,
        1,
        "the netns stays for a retry",
      );
      w.plugins.failNext({ type: "bridge", command: "DEL", times: 2 });
      const r = await p.delete(["vm1"]);
      assert.deepEqual(r.deleted, []);
      assert.match(r.errors[0].error, /delete --force/);
      // --force finishes without the plugins: netns, records, lock.
      w.plugins.failNext({ type: "bridge", command: "DEL", times: 2 });
      const f = await p.delete(["vm1"], { force: true });
      assert.deepEqual(f.deleted, ["vm1"]);
      assert.match(f.warnings[0].warning, /dropped by --force/);
    });
    assert.deepEqual(await w.leaks(), []);
  });
});

Deno.test("a crash at every point of add: a retried add ends with one consistent NIC, delete with nothing", async (t) => {
  const points = FAULT_POINTS.filter((p) => p.startsWith("add:"));
  for (const point of points) {
    await t.step(point, async () => {
      await inWorld(async (w) => {
        await w.crashAt(point, (p) => p.add("vm1", {}));
        await withProvider(w, async (p) => {
          const [nic] = await p.add("vm1", {});
          assert.equal(nic.state, "active");
          assert.equal((await p.verify("vm1")).ok, true);
          assert.equal(w.plugins.leases().length, 1, "one lease, not two");
          await p.delete(["vm1"]);
        });
        assert.deepEqual(await w.leaks(), []);
      });
      await inWorld(async (w) => {
        await w.crashAt(point, (p) => p.add("vm1", {}));
        await withProvider(w, async (p) => {
          assert.deepEqual((await p.delete(["vm1"])).errors, []);
        });
        assert.deepEqual(await w.leaks(), []);
      });
    });
  }
});

Deno.test("a crash at every point of remove and delete: running it again leaves nothing", async (t) => {
  const teardown: FaultPoint[] = [
    "retire:marked",
    "retire:unplumbed",
    "retire:cni-deleted",
  ];
  for (const point of teardown) {
    await t.step(`remove, ${point}`, async () => {
      await inWorld(async (w) => {
        await withProvider(w, (p) => p.add("vm1", {}, {}, {}));
        await w.crashAt(point, (p) => p.remove("vm1", 1));
        await withProvider(w, async (p) => {
          const r = await p.remove("vm1", 1);
          assert.deepEqual(r.removed.length + r.absent.length, 1);
          assert.deepEqual((await p.list()).map((n) => n.index), [0]);
          assert.equal((await p.verify("vm1")).ok, true);
          assert.equal(w.plugins.leases().length, 1);
          await p.delete(["vm1"]);
        });
        assert.deepEqual(await w.leaks(), []);
      });
    });
  }
  const del: FaultPoint[] = [
    "delete:marked",
    ...teardown,
    "delete:nic-retired",
    "delete:netns-deleted",
  ];
  for (const point of del) {
    for (const after of ["delete", "recover", "add", "gc"] as const) {
      await t.step(`delete, ${point}, then ${after}`, async () => {
        await inWorld(async (w) => {
          await withProvider(w, (p) => p.add("vm1", {}, {}, {}));
          await w.crashAt(point, (p) => p.delete(["vm1"]));
          await withProvider(w, async (p) => {
            if (after === "delete") {
              assert.deepEqual((await p.delete(["vm1"])).errors, []);
            } else if (after === "recover") {
              // A delete is finished, never revived.
              await assert.rejects(
                p.recover("vm1"),
                /delete is finished|no records/,
              );
            } else if (after === "add") {
              const [nic] = await p.add("vm1", {});
              assert.equal(nic.state, "active");
              await p.delete(["vm1"]);
            } else {
              const orch = new GcOrchestrator();
              p.registerGc(orch);
              const [r] = await orch.run([]);
              assert.deepEqual(r.errors, []);
            }
          });
          assert.deepEqual(await w.leaks(), []);
        });
      });
    }
  }
});

Deno.test("recover repairs only what is broken, keeps NIC ids, MACs, IPs and TAP names", async () => {
  await inWorld(async (w) => {
    await withProvider(w, async (p) => {
      const nics = await p.add("vm1", {}, {}, {});
      const ns = nics[0].netnsPath;
      const healthy = await p.recover("vm1");
      assert.deepEqual(healthy.repaired, []);
      assert.deepEqual(healthy.rebuilt, []);
      assert.deepEqual(healthy.nics, nics, "a healthy VM is not touched");

      // TAP 0 and NIC 1's redirect gone: mended in place, no hooks.
      const tap1 = w.kernel.link(ns, "tap1")!.index;
      w.kernel.deleteLink(ns, "tap0");
      w.kernel.deleteIngressQdisc(ns, "eth1");
      const hooksBefore = w.hooks.length;
      const mended = await p.recover("vm1");
      assert.deepEqual(mended.rebuilt, []);
      assert.deepEqual(mended.repaired.map((r) => r.index), [0, 1]);
      assert.match(mended.repaired[0].actions.join(), /TAP tap0 re-made/);
      assert.match(mended.repaired[1].actions.join(), /redirects/);
      assert.equal(w.kernel.link(ns, "tap1")!.index, tap1, "tap1 kept");
      assert.equal(w.hooks.length, hooksBefore, "no hooks for a repair");
      assert.deepEqual(mended.nics, nics);

      // NIC 1's veth gone: rebuilt with the same identity, hooks told.
      w.kernel.deleteLink(ns, "eth1");
      const rebuilt = await p.recover("vm1");
      assert.deepEqual(rebuilt.rebuilt, [1]);
      assert.deepEqual(rebuilt.problems, []);
      assert.deepEqual(rebuilt.nics, nics);
      assert.deepEqual(
        w.hooks.slice(hooksBefore).map((h) =>
          `${h.event}:${h.operation}:${h.index}`
        ),
        [
          "beforeRemove:recover:1",
          "beforeAdd:recover:1",
          "afterRemove:recover:1",
          "afterAdd:recover:1",
        ],
      );

      // NIC 0's host veth off its bridge: put back on, in place.
      const bridge = w.kernel.link(HOST_NETNS, "vmnic0")!;
      const hostVeths = () =>
        w.kernel.links(HOST_NETNS).filter((l) => l.kind === "veth");
      const [veth0] = hostVeths();
      w.kernel.setMaster(HOST_NETNS, veth0.name, null);
      assert.equal((await p.verify("vm1")).ok, false);
      const reattached = await p.recover("vm1");
      assert.deepEqual(reattached.rebuilt, []);
      assert.match(
        reattached.repaired.map((r) => r.actions.join()).join(),
        new RegExp(`host veth ${veth0.name} put back on bridge vmnic0`),
      );
      assert.equal(w.kernel.link(HOST_NETNS, veth0.name)!.master, bridge.index);
      assert.equal((await p.verify("vm1")).ok, true);

      // The bridge gone: the first NIC's rebuild has the plugins make it
      // again; the next NIC's host veth is put back on it.
      w.kernel.deleteLink(HOST_NETNS, "vmnic0");
      const rebridged = await p.recover("vm1");
      assert.deepEqual(rebridged.rebuilt, [0]);
      assert.deepEqual(rebridged.repaired.map((r) => r.index), [1]);
      assert.match(rebridged.repaired[0].actions.join(), /put back on bridge/);
      assert.deepEqual(rebridged.problems, []);
      assert.deepEqual(rebridged.nics, nics);
      assert.equal((await p.verify("vm1")).ok, true);

      // The netns gone: everything rebuilt, still the same.
      w.kernel.deleteNetns("t-vm1", w.config.netnsDir!);
      const back = await p.recover("vm1");
      assert.deepEqual(back.rebuilt, [0, 1]);
      assert.deepEqual(back.nics, nics);
      assert.equal((await p.verify("vm1")).ok, true);
      assert.equal(w.plugins.leases().length, 2);
    });
  });
});

Deno.test("an automatic repair never finishes a delete nobody asked it for; recover by hand does", async () => {
  await inWorld(async (w) => {
    await withProvider(w, (p) => p.add("vm1", {}));
    await w.crashAt("delete:marked", (p) => p.delete(["vm1"]));
    await withProvider(w, async (p) => {
      await assert.rejects(
        p.recover("vm1", { finishDelete: false }),
        (e: unknown) =>
          e instanceof ConflictError && /being deleted/.test(e.message),
      );
      assert.deepEqual((await p.vms()).map((v) => v.vmId), ["vm1"]);
      await assert.rejects(p.recover("vm1"), /the delete is finished now/);
      assert.deepEqual(await p.vms(), []);
    });
    assert.deepEqual(await w.leaks(), []);
  });
});

Deno.test("recover never tears down what it cannot rebuild", async () => {
  await inWorld(async (w) => {
    await w.conflist(
      "dual",
      bridgeList("dual", { subnets: ["10.96.0.0/24", "fd00:96::/64"] }),
    );
    await withProvider(w, async (p) => {
      const [nic] = await p.add("vm1", { network: "dual" });
      assert.equal(nic.ips.length, 2);
      w.kernel.deleteLink(nic.netnsPath, "eth0");
      const calls = w.plugins.callsOf("DEL").length;
      const r = await p.recover("vm1");
      assert.match(r.problems[0].error, /"capabilities": \{"ips": true\}/);
      assert.equal(w.plugins.callsOf("DEL").length, calls, "no DEL ran");
      assert.deepEqual(
        w.plugins.leases().map((l) => l.address).sort(),
        [
          nic.ips[0].address,
          nic.ips[1].address,
        ].sort(),
        "its addresses stay its own",
      );
      assert.deepEqual(await p.list(), [nic], "its record stays");
    });
  });
});

Deno.test("quiesce is recorded: verify knows, a NIC added meanwhile stays down, recover keeps it down", async () => {
  await inWorld(async (w) => {
    await withProvider(w, async (p) => {
      const [nic] = await p.add("vm1", {});
      const ns = nic.netnsPath;
      const q = await p.quiesce("vm1");
      assert.equal(q[0].state, "quiesced");
      assert.equal(w.kernel.link(ns, "eth0")?.up, false);
      assert.equal((await p.verify("vm1")).ok, true);
      const [, nic1] = await p.add("vm1", {}, {}, {});
      assert.equal(nic1.state, "quiesced");
      assert.equal(w.kernel.link(ns, "eth1")?.up, false);
      w.kernel.setLinkUp(ns, "eth0", true);
      const v = await p.verify("vm1");
      assert.match(v.problems.join(), /eth0 is up although the VM is quiesced/);
      await p.recover("vm1");
      assert.equal(w.kernel.link(ns, "eth0")?.up, false);
      await p.quiesce("vm1", false);
      assert.equal(w.kernel.link(ns, "eth0")?.up, true);
      assert.equal(w.kernel.link(ns, "eth1")?.up, true);
      assert.deepEqual((await p.list()).map((n) => n.state), [
        "active",
        "active",
      ]);
    });
  });
});

Deno.test("an interrupt ends add at its next step, rolled back", async () => {
  await inWorld(async (w) => {
    const stop = new AbortController();
    const p = await w.open({
      signal: stop.signal,
      fault: (at) => {
        if (at === "add:active") stop.abort("SIGTERM");
      },
    });
    try {
      // NIC 0 made, then the signal: NIC 1 is never begun, NIC 0 undone.
      await assert.rejects(
        p.add("vm1", {}, {}, {}),
        (e: unknown) =>
          e instanceof InterruptedError &&
          /interrupted by SIGTERM; rolled back/.test(e.message),
      );
    } finally {
      p.close();
    }
    assert.deepEqual(await w.leaks(), []);
  });
});

Deno.test("ownership: a netns without a record is never taken over; --adopt takes it, never another install's", async () => {
  await inWorld(async (w) => {
    await withProvider(w, async (p) => {
      // Made by hand, with an eth0 of its own.
      const { path } = w.kernel.ensureNetns("t-vm1", w.config.netnsDir!);
      w.kernel.createVethPair({
        netns: path,
        name: "eth0",
        hostName: "vhand0",
      });
      await assert.rejects(p.add("vm1", {}), /no record of VM vm1.*--adopt/);
      assert.deepEqual(await p.vms(), []);
      await p.prepare("vm1", {}, { adopt: true });
      // Adopted, but its eth0 is still not vmnic's: never DELeted.
      await assert.rejects(
        p.add("vm1", {}),
        (e: unknown) =>
          e instanceof ConflictError && /eth0 already exists/.test(e.message),
      );
      assert.ok(w.kernel.link(path, "eth0"), "the foreign eth0 is untouched");
      assert.equal(w.plugins.callsOf("DEL").length, 0);
    });
    // Another install's netns (its tag on lo): not even --adopt takes it.
    const { path } = w.kernel.ensureNetns("t-vm2", w.config.netnsDir!);
    w.kernel.inNetns(path, (s) => tagNetns(s.conn, "vmnic deadbeef /other"));
    await withProvider(w, async (p) => {
      await assert.rejects(
        p.prepare("vm2", {}, { adopt: true }),
        /belongs to another vmnic install \(install deadbeef\)/,
      );
      await assert.rejects(p.add("vm2", {}), ConflictError);
      const orch = new GcOrchestrator();
      orch.register(p.gcModule({ includeUnknown: true }));
      const [r] = await orch.run([]);
      assert.match(
        r.skipped.find((s) => s.id === "vm2")?.reason ?? "",
        /another vmnic install/,
      );
      assert.ok(w.kernel.netnsExists("t-vm2", w.config.netnsDir!));
    });
  });
});

Deno.test("two installs on one prefix: the second is refused before it touches anything", async () => {
  await inWorld(async (w) => {
    const { CniProvider } = await import("../../src/provider/provider.ts");
    const b = {
      ...w.config,
      rootDir: `${w.dir}/root-b`,
      runDir: `${w.dir}/run-b`,
    };
    const seams = { kernel: w.kernel, pluginExec: w.plugins };
    // B exists already (made on another prefix), then A claims "t-".
    (await CniProvider.open({ ...b, netnsPrefix: "u-" }, seams)).close();
    await withProvider(w, (p) => p.add("vm1", {}));
    const pb = await CniProvider.open(b, seams);
    try {
      for (const vm of ["vm1", "vm9"]) {
        await assert.rejects(
          pb.add(vm, {}),
          (e: unknown) =>
            e instanceof ConflictError &&
            /belongs to the vmnic install at .*root \(install/.test(e.message),
        );
      }
      const orch = new GcOrchestrator();
      orch.register(pb.gcModule({ includeUnknown: true }));
      const [r] = await orch.run([]);
      assert.deepEqual(r.collected, [], "B's gc never deletes A's netns");
      assert.match(r.skipped[0].reason, /another vmnic install/);
    } finally {
      pb.close();
    }
    // A new install on A's prefix is refused as it opens.
    await assert.rejects(
      CniProvider.open({ ...b, rootDir: `${w.dir}/root-c` }, seams),
      ConflictError,
    );
    // Nor may a prefix overlap A's: "t-v" names would be A's as well.
    for (const prefix of ["t-v", "t"]) {
      const pc = await CniProvider.open({ ...b, netnsPrefix: prefix }, seams);
      try {
        await assert.rejects(
          pc.add("vm5", {}),
          (e: unknown) =>
            e instanceof ConflictError &&
            /overlaps prefix "t-" of the vmnic install at/.test(e.message),
        );
      } finally {
        pc.close();
      }
    }
    await withProvider(w, async (p) => {
      assert.equal((await p.verify("vm1")).ok, true);
      assert.equal(w.plugins.callsOf("DEL").length, 0);
    });
  });
});

Deno.test("gc collects recorded VMs; unknown netns only with includeUnknown", async () => {
  await inWorld(async (w) => {
    await withProvider(w, async (p) => {
      await p.add("vm1", {});
      await p.add("vm2", {});
      w.kernel.ensureNetns("t-orphan", w.config.netnsDir!);
      w.kernel.addStaleFile(w.config.netnsDir!, "t-empty");
      const run = async (includeUnknown: boolean) => {
        const orch = new GcOrchestrator();
        orch.register(p.gcModule({ includeUnknown }));
        return (await orch.run(["vm1"]))[0];
      };
      const r = await run(false);
      assert.deepEqual(r.collected.sort(), ["empty", "vm2"]);
      assert.deepEqual(r.skipped.map((s) => s.id), ["orphan"]);
      assert.ok(w.kernel.netnsExists("t-orphan", w.config.netnsDir!));
      const u = await run(true);
      assert.deepEqual(u.collected, ["orphan"]);
      assert.match(u.warnings[0].warning, /without CNI DEL/);
      assert.deepEqual((await p.vms()).map((v) => v.vmId), ["vm1"]);
    });
  });
});

Deno.test("gc removes a record backup a crash left before its COMMIT, never one whose netns is there", async () => {
  await inWorld(async (w) => {
    await withProvider(w, async (p) => {
      await p.add("vm1", {});
      const { Journal } = await import("../../src/store/journal.ts");
      const journal = new Journal(w.config.rootDir!);
      const [vm1] = journal.readAll();
      // A backup of a VM whose first COMMIT never came (no netns yet), and
      // one of a VM whose netns exists but whose record is gone.
      for (const id of ["ghost", "keepme"]) {
        journal.write(id, { ...vm1, vm: { ...vm1.vm, vmId: id }, nics: [] });
      }
      w.kernel.ensureNetns("t-keepme", w.config.netnsDir!);
      const orch = new GcOrchestrator();
      orch.register(p.gcModule());
      await orch.run(["vm1", "keepme"]);
      assert.deepEqual(journal.vmIds().sort(), ["keepme", "vm1"]);
      const again = new GcOrchestrator();
      again.register(p.gcModule());
      await again.run(["vm1"]);
      assert.deepEqual(
        journal.vmIds().sort(),
        ["keepme", "vm1"],
        "a netns without a record keeps its backup (restore-records needs it)",
      );
    });
  });
});

Deno.test("delete of a VM without records removes the backup a crash left before its first COMMIT", async () => {
  await inWorld(async (w) => {
    await withProvider(w, async (p) => {
      await p.add("vm1", {});
      const { Journal } = await import("../../src/store/journal.ts");
      const journal = new Journal(w.config.rootDir!);
      const [vm1] = journal.readAll();
      journal.write("ghost", {
        ...vm1,
        vm: { ...vm1.vm, vmId: "ghost" },
        nics: [],
      });
      const r = await p.delete(["ghost"]);
      assert.deepEqual(r.errors, []);
      assert.deepEqual(r.deleted, ["ghost"]);
      assert.deepEqual(journal.vmIds(), ["vm1"]);
      assert.deepEqual(await p.vms().then((v) => v.map((x) => x.vmId)), [
        "vm1",
      ]);
    });
  });
});

Deno.test("an emptied database is refused while the install's netns exist; restore-records brings the VMs back", async () => {
  await inWorld(async (w) => {
    let installId = "";
    const made = await withProvider(w, (p) => {
      installId = p.installId;
      return p.add("vm1", {}, {}, {});
    });
    await Deno.truncate(`${w.config.rootDir}/vmnic.db`, 0);
    for (const side of ["-wal", "-shm"]) {
      await Deno.remove(`${w.config.rootDir}/vmnic.db${side}`).catch(() => {});
    }
    await assert.rejects(
      w.open(),
      (e: unknown) =>
        e instanceof RecordsLostError &&
        /restore-records/.test(e.message) && /1 netns/.test(e.message),
    );
    // Nothing was created by the refusal: it holds.
    await assert.rejects(w.open(), RecordsLostError);
    // A look at what gc would take (which starts an empty database) keeps
    // the install's id and does not stand in the way of the restore.
    const fresh = await w.open({ records: "fresh" });
    const orch = new GcOrchestrator();
    orch.register(fresh.gcModule({ includeUnknown: true }));
    const [plan] = await orch.run([], { dryRun: true });
    assert.deepEqual(plan.candidates, ["vm1"]);
    assert.equal(fresh.installId, installId, "the lost database's id");
    fresh.close();
    const r = await w.open({ records: "restore" });
    assert.equal(r.installId, installId, "one install id throughout");
    assert.deepEqual(await r.list(), made);
    assert.equal((await r.verify("vm1")).ok, true);
    assert.deepEqual((await r.delete(["vm1"])).errors, []);
    r.close();
    assert.deepEqual(await w.leaks(), []);
  });
});

Deno.test("the lost-records check counts only netns a vmnic install tagged, and only this install's when its id is known", async () => {
  await inWorld(async (w) => {
    // Someone else's netns that happens to carry the prefix: not our state.
    w.kernel.ensureNetns("t-someone", w.config.netnsDir!);
    let installId = "";
    await withProvider(w, (p) => {
      installId = p.installId;
      return Promise.resolve();
    });
    await Deno.remove(`${w.config.rootDir}/vmnic.db`);
    // Another install's tagged netns does not block this one (its id is
    // kept beside the backups), ...
    const { path } = w.kernel.ensureNetns("t-vm9", w.config.netnsDir!);
    w.kernel.inNetns(path, (s) => tagNetns(s.conn, "vmnic deadbeef /other"));
    await withProvider(w, (p) => {
      assert.equal(p.installId, installId, "the install keeps its id");
      return Promise.resolve();
    });
    await Deno.remove(`${w.config.rootDir}/vmnic.db`);
    // ... its own does.
    w.kernel.inNetns(path, (s) => tagNetns(s.conn, `vmnic ${installId} x`));
    await assert.rejects(
      w.open(),
      (e: unknown) => e instanceof RecordsLostError && /1 netns/.test(`${e}`),
    );
  });
});

Deno.test("a crash in recover's rebuild or in quiesce: running recover again gets the same NICs back", async (t) => {
  for (
    const point of [
      "recover:nic-retired",
      "add:record-inserted",
      "add:cni-added",
      "add:plumbed",
    ] as const
  ) {
    await t.step(`recover, ${point}`, async () => {
      await inWorld(async (w) => {
        const nics = await withProvider(w, (p) => p.add("vm1", {}, {}, {}));
        w.kernel.deleteLink(nics[1].netnsPath, "eth1");
        await w.crashAt(point, (p) => p.recover("vm1"));
        await withProvider(w, async (p) => {
          const r = await p.recover("vm1");
          assert.deepEqual(r.problems, []);
          assert.deepEqual(r.nics, nics, "same ids, MACs, IPs, TAPs");
          assert.equal((await p.verify("vm1")).ok, true);
          assert.equal(w.plugins.leases().length, 2);
          await p.delete(["vm1"]);
        });
        assert.deepEqual(await w.leaks(), []);
      });
    });
  }
  await t.step("quiesce, quiesce:recorded", async () => {
    await inWorld(async (w) => {
      await withProvider(w, (p) => p.add("vm1", {}));
      await w.crashAt("quiesce:recorded", (p) => p.quiesce("vm1"));
      await withProvider(w, async (p) => {
        const v = await p.verify("vm1");
        assert.match(v.problems.join(), /up although the VM is quiesced/);
        await p.recover("vm1");
        assert.equal((await p.verify("vm1")).ok, true);
        assert.deepEqual((await p.list()).map((n) => n.state), ["quiesced"]);
      });
    });
  });
});
