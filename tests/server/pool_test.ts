/**
 * The warm pool of a real `vmnic serve --pool NETWORK=3` (issue #10 §3):
 * `GET /v1/pool` shows three ready slots and the IPs they hold; an add over
 * the socket takes one and answers as any add does (the same JSON, a netns
 * named after the VM, `verify` ok), and the pool fills again. Then the
 * daemon is killed with SIGKILL at random moments of filling, claiming and
 * refilling, two dozen times, and started again: every add that was
 * answered 200 is there, every VM is whole or made whole by the documented
 * way out (the add again), nothing on the host is unaccounted for (netns,
 * host veths, leases), and after `delete` and `gc --include-pool --active
 * ''` nothing is left at all.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { rootTest } from "../support/harness.ts";
import {
  type Fixture,
  makeFixture,
  vethsOnBridge,
} from "../provider/_fixture.ts";
import { nicConfig } from "../../src/cli/schemas.ts";
import type { NicConfig, VmInfo } from "../../src/provider/types.ts";
import type { PoolStatus } from "../../src/provider/pool.ts";
import { resolveConfig } from "../../src/provider/config.ts";
import {
  at,
  type DaemonProcess,
  killDaemons,
  request,
  sleep,
  socketDir,
  spawnDaemon,
  startDaemon,
} from "./_daemon.ts";
import { holdings, leaks } from "./_state.ts";
import { schemaProblems } from "./_schema.ts";
import { hookMarks, timingHook } from "./_hooks.ts";

const SLOTS = 3;
const KILLS = 24;

/** The pool's status from the daemon. */
async function pool(socket: string): Promise<PoolStatus["pools"][number]> {
  const r = await request(socket, "GET", "/v1/pool");
  assert.equal(r.status, 200, r.text);
  const { pools } = r.json as PoolStatus;
  assert.equal(pools.length, 1, r.text);
  return pools[0];
}

/** Waits until the pool holds `ready` slots and fills none. */
async function poolReady(socket: string, ready = SLOTS) {
  const deadline = Date.now() + 60_000;
  let last;
  while (Date.now() < deadline) {
    last = await pool(socket);
    if (last.ready >= ready && last.filling === 0) return last;
    await sleep(100);
  }
  throw new Error(`the pool never had ${ready} ready: ${JSON.stringify(last)}`);
}

/** An add of one NIC over the socket. */
function addOne(socket: string, vm: string) {
  return request(socket, "POST", `/v1/vms/${vm}/nics`, { json: {} });
}

/**
 * What the host holds that the records do not account for: netns that are
 * no VM's or slot's, leases that are no NIC's, host veths beyond one per
 * NIC, NICs not active.
 */
async function unaccounted(fx: Fixture): Promise<string[]> {
  const h = await holdings(fx);
  const nics = [...h.nics, ...h.slots] as NicConfig[];
  const owners = [
    ...(h.vms as VmInfo[]).map((v) => v.vmId),
    ...new Set((h.slots as NicConfig[]).map((n) => n.vmId)),
  ].sort();
  const out: string[] = [];
  if (JSON.stringify(h.netns) !== JSON.stringify(owners)) {
    out.push(
      `netns ${JSON.stringify(h.netns)}, VMs and slots ${
        JSON.stringify(owners)
      }`,
    );
  }
  const ips = nics.flatMap((n) => n.ips.map((ip) => ip.address)).sort();
  if (JSON.stringify(h.leases) !== JSON.stringify(ips)) {
    out.push(
      `leases ${JSON.stringify(h.leases)}, NIC IPs ${JSON.stringify(ips)}`,
    );
  }
  if (h.veths.length !== nics.length) {
    out.push(`${h.veths.length} host veths for ${nics.length} NICs`);
  }
  for (const n of nics) {
    if (n.state !== "active") out.push(`${n.vmId}/${n.index} is ${n.state}`);
  }
  return out;
}

/** Waits until the daemon says it listens (or it exits). */
async function listening(d: DaemonProcess): Promise<boolean> {
  let exited = false;
  d.exited.then(() => exited = true);
  for (let i = 0; i < 1200 && !exited; i++) {
    if (d.log().includes("listening on")) return true;
    await sleep(25);
  }
  return false;
}

/** Waits until the hook has started for `vm` (its add reached the daemon). */
async function hookStarted(log: string, vm: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if ((await hookMarks(log)).some((m) => m.vmId === vm)) return;
    await sleep(10);
  }
  throw new Error(`no hook ran for ${vm}`);
}

function randomBelow(n: number): number {
  return crypto.getRandomValues(new Uint32Array(1))[0] % n;
}

rootTest(
  "pool: serve --pool hands out ready slots over the socket and fills again; kill -9 during fill, claim and refill leaves nothing behind",
  async (t) => {
    const fx = await makeFixture("pol", { octet: 169 });
    const dir = await socketDir();
    const socket = at(dir, "vmnic.sock");
    const args = [`--pool=${fx.network}=${SLOTS}`];
    try {
      await t.step(
        "three ready slots; an add takes one; the pool fills again",
        async () => {
          const daemon = await startDaemon(fx, { socket, args });
          const before = await poolReady(socket);
          assert.equal(before.network, fx.network);
          assert.equal(before.queues, 1);
          assert.equal(before.target, SLOTS);
          assert.equal(before.slots.length, SLOTS);
          const slotIps = before.slots.flatMap((s) => s.ips).sort();
          assert.equal(slotIps.length, SLOTS, "one IP per slot");
          const net = fx.subnet.split(".").slice(0, 3).join(".") + ".";
          assert.ok(slotIps.every((ip) => ip.startsWith(net)), `${slotIps}`);
          assert.deepEqual(await fx.leasedIps(), slotIps, "slots hold leases");
          assert.deepEqual(
            await fx.netns(),
            before.slots.map((s) => s.id).sort(),
            "one netns per slot",
          );
          assert.deepEqual(await unaccounted(fx), []);

          const r = await addOne(socket, "vmP");
          assert.equal(r.status, 200, r.text);
          const [nic] = r.json as NicConfig[];
          assert.ok(slotIps.includes(nic.ips[0].address), "a slot's IP");
          assert.equal(nic.vmId, "vmP");
          assert.equal(nic.state, "active");
          const { netnsDir } = resolveConfig(fx.config);
          assert.equal(nic.netnsPath, `${netnsDir}/${fx.prefix}vmP`);
          const taken = before.slots.find((s) =>
            s.ips.includes(nic.ips[0].address)
          )!;
          const names = await fx.netns();
          assert.ok(names.includes("vmP"), "the VM's netns");
          assert.ok(
            !names.includes(taken.id),
            "the slot's netns took its name",
          );
          // The same JSON as an add the pool does not serve (two NICs).
          const plain = await request(socket, "POST", "/v1/vms/vmR/nics", {
            json: { nics: 2 },
          });
          assert.equal(plain.status, 200, plain.text);
          for (const n of [nic, ...plain.json as NicConfig[]]) {
            assert.deepEqual(schemaProblems(nicConfig, n), []);
            assert.deepEqual(
              Object.keys(n).sort(),
              Object.keys((plain.json as NicConfig[])[0]).sort(),
            );
          }
          const v = await request(socket, "POST", "/v1/vms/vmP/verify", {
            json: {},
          });
          assert.equal(v.status, 200, v.text);
          assert.equal((v.json as { ok: boolean }).ok, true, v.text);
          const after = await poolReady(socket);
          assert.equal(after.claimed, 1);
          assert.ok(!after.slots.some((s) => s.id === taken.id));
          assert.deepEqual(await unaccounted(fx), []);
          const del = await request(socket, "DELETE", "/v1/vms/vmP");
          assert.equal(del.status, 200, del.text);
          assert.ok(!(await fx.leasedIps()).includes(nic.ips[0].address));
          assert.deepEqual(await daemon.stop(), { code: 0, signal: null });
        },
      );

      const answered = new Set<string>(["vmR"]);
      await t.step(
        `kill -9 at random moments of fill, claim and refill, ${KILLS} times`,
        async () => {
          await killDaemons();
          // Hooks that take a while widen the claim's window: it runs from
          // beforeAdd's start to afterAdd's end.
          const log = join(fx.dir, "hooks.log");
          await timingHook(fx, {
            events: ["beforeAdd", "afterAdd"],
            sleepS: 0.1,
            log,
          });
          let seq = 0;
          for (let i = 0; i < KILLS; i++) {
            const phase = (["fill", "claim", "refill"] as const)[i % 3];
            if (phase === "fill") {
              // An empty pool: the start fills it from nothing.
              const keep = (await holdings(fx)).vms as VmInfo[];
              const gc = await fx.cli([
                "--no-daemon",
                "gc",
                "--include-pool",
                "--active",
                keep.map((v) => v.vmId).join(","),
              ]);
              assert.equal(gc.code, 0, gc.stderr);
              assert.deepEqual((await holdings(fx)).slots, []);
            }
            const d = spawnDaemon(fx, { socket, args });
            assert.ok(await listening(d), `start ${i}: ${d.log()}`);
            let client: Promise<{ vm: string; status: number }> | undefined;
            if (phase === "fill") {
              await sleep(randomBelow(800));
            } else {
              await poolReady(socket, phase === "claim" ? 1 : SLOTS);
              const vm = `vm${seq++}`;
              if (phase === "claim") {
                client = addOne(socket, vm).then(
                  (r) => ({ vm, status: r.status }),
                  () => ({ vm, status: 0 }),
                );
                await hookStarted(log, vm);
                await sleep(randomBelow(250));
              } else {
                const r = await addOne(socket, vm);
                assert.equal(r.status, 200, r.text);
                answered.add(vm);
                // The pool fills again behind the answer.
                await sleep(randomBelow(400));
              }
            }
            const exit = await d.kill();
            assert.equal(exit.signal, "SIGKILL", `kill ${i}: ${d.log()}`);
            const c = await client;
            if (c?.status === 200) answered.add(c.vm);
          }
        },
      );

      await t.step(
        "started again: every answered add is whole, nothing unaccounted for",
        async () => {
          await killDaemons();
          const daemon = await startDaemon(fx, { socket, args });
          await poolReady(socket);
          const vms = (await request(socket, "GET", "/v1/vms"))
            .json as VmInfo[];
          const ids = vms.map((v) => v.vmId);
          for (const vm of answered) {
            assert.ok(ids.includes(vm), `${vm} was answered 200 but is gone`);
          }
          for (const vm of ids) {
            let v = await request(socket, "POST", `/v1/vms/${vm}/verify`, {
              json: {},
            });
            if (!(v.json as { ok?: boolean }).ok) {
              assert.ok(!answered.has(vm), `${vm} was answered 200: ${v.text}`);
              // A crash during add: the next add finishes it.
              const again = await addOne(socket, vm);
              assert.equal(again.status, 200, `${vm}: ${again.text}`);
              v = await request(socket, "POST", `/v1/vms/${vm}/verify`, {
                json: {},
              });
            }
            assert.equal(
              (v.json as { ok?: boolean }).ok,
              true,
              `${vm}: ${v.text}`,
            );
          }
          assert.deepEqual(await unaccounted(fx), []);
          const p = await pool(socket);
          assert.equal(p.ready, SLOTS);
          assert.equal(p.failures, 0, p.lastError);
          // Delete half of the VMs through the daemon; gc takes the rest.
          for (const vm of ids.filter((_, i) => i % 2 === 0)) {
            const r = await request(socket, "DELETE", `/v1/vms/${vm}`);
            assert.equal(r.status, 200, r.text);
            assert.deepEqual(r.json, {
              deleted: [vm],
              errors: [],
              warnings: [],
            });
          }
          assert.deepEqual(await daemon.stop(), { code: 0, signal: null });
          const gc = await fx.cli([
            "--no-daemon",
            "gc",
            "--include-pool",
            "--active",
            "",
          ]);
          assert.equal(gc.code, 0, gc.stderr);
          assert.deepEqual(JSON.parse(gc.stdout).errors, []);
          assert.deepEqual(await leaks(fx), []);
          assert.deepEqual(await vethsOnBridge(fx.bridge), []);
        },
      );
    } finally {
      await killDaemons();
      await fx.cleanup();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
