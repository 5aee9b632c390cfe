/**
 * Clone-safe networking with real guests (issue 12 §3): a first VM is
 * added, two clones of it are added with `--clone-of`, and two QEMU guests
 * boot on the clones' TAPs with kernel command lines that carry the same
 * snapshot identity (the first VM's MAC, IP and gateway, from `vmnic
 * guest-config` and `vmnic hv-args` of each clone). Both are reachable
 * from the test's host netns at the same time at their distinct CNI
 * addresses; a TCP connection each guest opens to the host arrives from
 * its clone's CNI address (while the guest says it is the first VM's
 * address); `delete` leaves nothing behind.
 *
 * Runs under TCG unless `VMNIC_E2E_ACCEL=kvm`; the guest is built from
 * installed Debian packages (`deno task guest`).
 */
import assert from "node:assert/strict";
import { buildGuest, type GuestImage } from "../../scripts/build_guest.ts";
import {
  type Fixture,
  makeFixture,
  vethsOnBridge,
} from "../provider/_fixture.ts";
import type { NicConfig, VerifyResult } from "../../src/provider/types.ts";
import type { HvArgs } from "../../src/provider/hv_args.ts";
import { IS_ROOT, rootTest, run } from "../support/harness.ts";
import { chooseAccel, QemuGuest, qemuMissing } from "../e2e/_qemu.ts";

/** Boot to the READY marker; TCG on a busy 2-core host takes 10-60 s. */
const BOOT_TIMEOUT_MS = 240_000;
/** The guest's pings of its gateway and its connection, after READY. */
const AFTER_READY_TIMEOUT_MS = 90_000;
/** Second octet of the test's subnet (tests/e2e use 241 and 242). */
const OCTET = 246;

const accel = chooseAccel();

const guest: { image: GuestImage } | { skip: string } = await (async () => {
  if (!IS_ROOT) return { skip: "needs root" };
  const missing = await qemuMissing();
  if (missing) return { skip: `${missing} (deno task guest installs it)` };
  try {
    return { image: await buildGuest({ install: false, log: () => {} }) };
  } catch (e) {
    return {
      skip: `guest cannot be built: ${(e as Error).message} (deno task guest)`,
    };
  }
})();

/** What a guest-initiated connection showed the host. */
interface Arrival {
  /** The source address the host saw. */
  from: string;
  /** The line the guest sent (`VMNIC-HELLO <its own address>`). */
  line: string;
}

/** A TCP listener in the test's host netns that records who connects. */
function listen(): { port: number; arrivals: Arrival[]; close(): void } {
  const listener = Deno.listen({ hostname: "0.0.0.0", port: 0 });
  const arrivals: Arrival[] = [];
  (async () => {
    for await (const conn of listener) {
      const from = (conn.remoteAddr as Deno.NetAddr).hostname;
      (async () => {
        let text = "";
        const buf = new Uint8Array(256);
        try {
          for (;;) {
            const n = await conn.read(buf);
            if (n === null) break;
            text += new TextDecoder().decode(buf.subarray(0, n));
            if (text.includes("\n")) break;
          }
        } catch { /* the guest closed first */ }
        arrivals.push({ from, line: text.trim() });
        try {
          conn.close();
        } catch { /* closed */ }
      })();
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    arrivals,
    close: () => listener.close(),
  };
}

/** `ip=` of `guest-config --format cmdline`, split into its fields. */
async function ipParam(fx: Fixture, vm: string): Promise<string> {
  const r = await fx.cli(["guest-config", vm, "--format", "cmdline"], {
    json: false,
  });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

/** The identity fields of an `ip=` value: address, gateway, netmask. */
function identityOf(param: string): string {
  const [addr, , gw, mask] = param.replace(/^ip=/, "").split(":");
  return `${addr} via ${gw} mask ${mask}`;
}

async function hostPings(address: string): Promise<boolean> {
  const r = await run("ping", ["-c", "3", "-W", "3", address]);
  return r.code === 0;
}

if ("skip" in guest) {
  if (Deno.env.get("CI") === "true" && IS_ROOT) {
    const reason = guest.skip;
    Deno.test("clone e2e: guests required under CI=true", () => {
      throw new Error(`guest required under CI=true: ${reason}`);
    });
  } else {
    console.error(`vmnic clone e2e: skipped: ${guest.skip}`);
    Deno.test({
      name: `clone e2e (skipped: ${guest.skip})`,
      ignore: true,
      fn() {},
    });
  }
} else {
  const { image } = guest;
  rootTest(
    `clone e2e [${accel}]: two QEMU clones of one VM, same MAC/IP/gateway in the guest, reachable side by side at their own CNI addresses; their connections leave from those; delete leaves nothing`,
    async () => {
      const fx = await makeFixture("cg", { octet: OCTET });
      const qemus: QemuGuest[] = [];
      const server = listen();
      try {
        const [src] = await fx.cliOk<NicConfig[]>(["add", "src"]);
        const clones: NicConfig[] = [];
        for (const vm of ["c1", "c2"]) {
          const [nic] = await fx.cliOk<NicConfig[]>([
            "add",
            vm,
            "--clone-of",
            "src",
          ]);
          clones.push(nic);
        }
        const gw = src.ips[0].gateway!;
        const snapshot = {
          mac: src.mac,
          address: src.ips[0].address,
          gateway: gw,
        };
        // Each clone: its own attachment, the snapshot's identity for its guest.
        const addresses = clones.map((c) => c.ips[0].address);
        assert.equal(new Set([...addresses, src.ips[0].address]).size, 3);
        for (const c of clones) {
          assert.equal(c.guest?.mac, snapshot.mac);
          assert.equal(c.guest?.ips[0].address, snapshot.address);
          assert.equal(c.guest?.ips[0].gateway, snapshot.gateway);
          assert.equal(c.guest?.cloneOf, "src");
          assert.notEqual(c.mac, snapshot.mac, "the network sees its own MAC");
        }
        const params = await Promise.all(
          ["src", "c1", "c2"].map((vm) => ipParam(fx, vm)),
        );
        assert.equal(identityOf(params[1]), identityOf(params[0]));
        assert.equal(identityOf(params[2]), identityOf(params[0]));

        // Boot both clones with what vmnic prints for them.
        for (const [i, vm] of ["c1", "c2"].entries()) {
          const hv = await fx.cliOk<HvArgs>(["hv-args", vm, "--for", "qemu"]);
          assert.ok(
            hv.args.some((a) => a.includes(`mac=${snapshot.mac}`)),
            hv.args.join(" "),
          );
          qemus.push(QemuGuest.start({
            image,
            hv,
            vcpus: 1,
            ipParam: `${params[i + 1]} vmnic.connect=${gw}:${server.port}`,
            accel,
          }));
        }
        for (const [i, q] of qemus.entries()) {
          const ready = await q.waitFor(
            /VMNIC-GUEST-READY (\S+)/,
            BOOT_TIMEOUT_MS,
          );
          assert.equal(ready[1], snapshot.address, `c${i + 1} is the snapshot`);
          const s = ((performance.now() - q.startedAt) / 1000).toFixed(1);
          console.log(`  c${i + 1}: guest ready in ${s} s under ${accel}`);
        }
        for (const [i, q] of qemus.entries()) {
          const ping = await q.waitFor(
            /VMNIC-GUEST-GW-PING (ok|fail)/,
            AFTER_READY_TIMEOUT_MS,
          );
          assert.equal(ping[1], "ok", `c${i + 1} pinged ${gw}`);
          const conn = await q.waitFor(
            /VMNIC-GUEST-CONNECT (ok|fail)/,
            AFTER_READY_TIMEOUT_MS,
          );
          assert.equal(conn[1], "ok", `c${i + 1} connected to the host`);
        }

        // Side by side: both answer at once, each at its own address.
        const pings = await Promise.all(addresses.map(hostPings));
        assert.deepEqual(pings, [true, true], `host pings ${addresses}`);

        // Guest-initiated: each left from its clone's CNI address, while
        // the guest itself has the snapshot's.
        const deadline = performance.now() + AFTER_READY_TIMEOUT_MS;
        while (server.arrivals.length < 2 && performance.now() < deadline) {
          await new Promise((r) => setTimeout(r, 200));
        }
        const seen = server.arrivals.map((a) => a.from).sort();
        assert.deepEqual(seen, [...addresses].sort(), "sources seen by host");
        for (const a of server.arrivals) {
          assert.equal(a.line, `VMNIC-HELLO ${snapshot.address}`);
        }
        for (const vm of ["c1", "c2"]) {
          const v = await fx.cliOk<VerifyResult>(["verify", vm]);
          assert.ok(v.ok, v.problems.join("; "));
          assert.deepEqual(v.nics[0].translation, {
            rules: true,
            routes: true,
            forwarding: true,
            proxyArp: true,
          });
        }

        for (const q of qemus) await q.kill();
        const del = await fx.cliOk(["delete", "src", "c1", "c2"]);
        assert.deepEqual(del, {
          deleted: ["src", "c1", "c2"],
          errors: [],
          warnings: [],
        });
        assert.deepEqual(await fx.netns(), [], "no netns with the prefix");
        assert.deepEqual(await fx.cliOk(["list"]), [], "no record");
        assert.deepEqual(await fx.leasedIps(), [], "no host-local lease");
        assert.deepEqual(await vethsOnBridge(fx.bridge), [], "no host veth");
      } finally {
        server.close();
        for (const q of qemus) await q.kill();
        await fx.cleanup();
      }
    },
  );
}
