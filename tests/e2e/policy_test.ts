/**
 * The policy with a real guest (issue 11 §4): QEMU boots Debian's kernel
 * with a busybox initramfs (and iperf3) on a vmnic TAP, as the other e2e
 * tests do, with a shell on its serial console so the test can act as the
 * guest (change its IP or MAC, ping, serve HTTP, run iperf3).
 *
 * - rate limits: iperf3 through a NIC limited to 100 Mbit/s within ±15% in
 *   each direction, then the same guest unlimited (changed live);
 * - anti-spoofing: a changed IP, then a changed MAC, no longer reach the
 *   bridge (the TAP's redirect counters stand still), back to its own
 *   address traffic flows again; turned off (live), the spoofed IP passes;
 * - egress: a denied address of the host netns is unreachable while an
 *   allowed one answers; the metadata address is denied by default; a
 *   rule added live takes effect;
 * - isolation: two guests with `isolate` cannot reach each other and both
 *   reach the gateway; without it they can;
 * - port mappings: Debian's portmap plugin in the chain, a TCP connection
 *   to the host port reaches busybox httpd in the guest.
 *
 * Runs under TCG unless `VMNIC_E2E_ACCEL=kvm`; builds the guest with
 * iperf3 into `$VMNIC_E2E_CACHE` (`deno task guest --with-iperf3`).
 */
import assert from "node:assert/strict";
import { buildGuest, type GuestImage } from "../../scripts/build_guest.ts";
import { type Fixture, makeFixture } from "../provider/_fixture.ts";
import type { NicConfig } from "../../src/provider/types.ts";
import type { HvArgs } from "../../src/provider/hv_args.ts";
import type { PolicyResult } from "../../src/provider/policy_op.ts";
import { IS_ROOT, rootTest, run, sh } from "../support/harness.ts";
import { chooseAccel, QemuGuest, qemuMissing } from "./_qemu.ts";

/** Boot to the shell; TCG on a busy 2-core host takes 10-40 s. */
const BOOT_TIMEOUT_MS = 150_000;
/** iperf3's duration per direction. */
const IPERF_SECONDS = 8;
/** The shaped rate and the tolerance the issue asks for. */
const RATE_BPS = 100_000_000;
const TOLERANCE = 0.15;

const accel = chooseAccel();

const guest: { image: GuestImage } | { skip: string } = await (async () => {
  if (!IS_ROOT) return { skip: "needs root" };
  const missing = await qemuMissing();
  if (missing) return { skip: `${missing} (deno task guest installs it)` };
  try {
    return {
      image: await buildGuest({
        install: false,
        withIperf3: true,
        log: () => {},
      }),
    };
  } catch (e) {
    return {
      skip: `guest cannot be built: ${
        (e as Error).message
      } (deno task guest --with-iperf3)`,
    };
  }
})();

function guestTest(
  name: string,
  fn: (image: GuestImage) => Promise<void>,
): void {
  if ("skip" in guest) {
    if (!IS_ROOT) return rootTest(name, () => {});
    if (Deno.env.get("CI") === "true") {
      const reason = guest.skip;
      Deno.test(name, () => {
        throw new Error(`guest required under CI=true: ${reason}`);
      });
      return;
    }
    console.error(`vmnic e2e: policy guest tests skipped: ${guest.skip}`);
    Deno.test({
      name: `${name} (skipped: ${guest.skip})`,
      ignore: true,
      fn() {},
    });
    return;
  }
  const { image } = guest;
  rootTest(`${name} [${accel}]`, () => fn(image));
}

/** Boots a guest on VM `vm`'s NICs with a console shell; waits for it. */
async function boot(
  fx: Fixture,
  vm: string,
  image: GuestImage,
): Promise<QemuGuest> {
  const hv = await fx.cliOk<HvArgs>(["hv-args", vm, "--for", "qemu"]);
  const ip = await fx.cli(["guest-config", vm, "--format", "cmdline"], {
    json: false,
  });
  assert.equal(ip.code, 0, ip.stderr);
  const qemu = QemuGuest.start({
    image,
    hv,
    vcpus: 1,
    ipParam: ip.stdout.trim(),
    accel,
    console: true,
  });
  await qemu.waitFor(/VMNIC-GUEST-GW-PING (ok|fail)/, BOOT_TIMEOUT_MS);
  // The shell is up once it answers.
  assert.equal((await qemu.sh("true")).code, 0);
  return qemu;
}

/** Pings `address` from the host netns; true on a reply. */
async function hostPings(address: string): Promise<boolean> {
  return (await run("ping", ["-c", "2", "-W", "2", address])).code === 0;
}

/** The guest pings `address`; true on a reply. */
async function guestPings(g: QemuGuest, address: string): Promise<boolean> {
  return (await g.sh(`ping -c 2 -W 2 ${address} >/dev/null 2>&1`)).code === 0;
}

/**
 * Frames the TAP's filters redirected from the guest (mirred counters),
 * of the filters for `protocols` (tc's names: ip, arp, ipv6), or all.
 */
async function redirected(
  ns: string,
  tap: string,
  protocols?: string[],
): Promise<number> {
  const out = await sh(
    "tc",
    "-n",
    ns,
    "-s",
    "-j",
    "filter",
    "show",
    "dev",
    tap,
    "ingress",
  );
  const filters = out.trim()
    ? JSON.parse(out) as Record<string, unknown>[]
    : [];
  let n = 0;
  for (const f of filters) {
    if (protocols && !protocols.includes(String(f.protocol))) continue;
    const actions = ((f.options as { actions?: Record<string, unknown>[] })
      ?.actions) ?? [];
    for (const a of actions) {
      n += Number((a.stats as { packets?: number } | undefined)?.packets ?? 0);
    }
  }
  return n;
}

/** iperf3 from the host netns to the guest: bits/s the receiver saw. */
async function iperf(address: string, reverse: boolean): Promise<number> {
  const args = ["-c", address, "-t", String(IPERF_SECONDS), "-J"];
  if (reverse) args.push("-R");
  let last = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    const r = await run("iperf3", args);
    const json = (() => {
      try {
        return JSON.parse(r.stdout);
      } catch {
        return null;
      }
    })();
    const bps = json?.end?.sum_received?.bits_per_second;
    if (r.code === 0 && typeof bps === "number") return bps;
    last = `${r.stderr} ${json?.error ?? r.stdout.slice(0, 300)}`;
    await new Promise((res) => setTimeout(res, 1000));
  }
  throw new Error(`iperf3 ${args.join(" ")}: ${last}`);
}

/** A plain HTTP/1.0 GET over TCP from the host netns: the whole answer. */
async function httpGet(host: string, port: number): Promise<string> {
  const conn = await Deno.connect({ hostname: host, port });
  try {
    await conn.write(new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n"));
    let text = "";
    const buf = new Uint8Array(4096);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    return text;
  } finally {
    conn.close();
  }
}

const mbit = (bps: number) => `${(bps / 1e6).toFixed(1)} Mbit/s`;

guestTest(
  "e2e policy: 100 Mbit/s each way within 15%, far more unlimited (changed live)",
  async (image) => {
    const fx = await makeFixture("erate", { octet: 131 });
    let qemu: QemuGuest | undefined;
    try {
      const [nic] = await fx.cliOk<NicConfig[]>([
        "add",
        "vm",
        "--rate",
        "100mbit",
      ]);
      qemu = await boot(fx, "vm", image);
      const started = await qemu.sh("iperf3 -s -D");
      assert.equal(started.code, 0, started.out);
      const address = nic.ips[0].address;
      await iperf(address, false).catch(() => 0); // warm up
      const toGuest = await iperf(address, false);
      const fromGuest = await iperf(address, true);
      console.log(
        `  limited to ${mbit(RATE_BPS)}: host→guest ${mbit(toGuest)}, ` +
          `guest→host ${mbit(fromGuest)}`,
      );
      for (const [dir, got] of [["toward", toGuest], ["from", fromGuest]]) {
        assert.ok(
          Math.abs((got as number) - RATE_BPS) <= RATE_BPS * TOLERANCE,
          `${dir} the guest: ${mbit(got as number)} is not within ` +
            `${TOLERANCE * 100}% of ${mbit(RATE_BPS)}`,
        );
      }
      // Live, without re-adding the NIC: unlimited.
      const r = await fx.cliOk<PolicyResult>([
        "policy",
        "vm",
        "0",
        "--rate",
        "none",
      ]);
      assert.equal(r.changed, true);
      const freeTo = await iperf(address, false);
      const freeFrom = await iperf(address, true);
      console.log(
        `  unlimited (same guest, same run): host→guest ${mbit(freeTo)}, ` +
          `guest→host ${mbit(freeFrom)}`,
      );
      assert.ok(
        freeTo > toGuest * 1.3 && freeFrom > fromGuest * 1.3,
        `unlimited should do far more: ${mbit(freeTo)}, ${mbit(freeFrom)}`,
      );
      assert.ok(qemu.running, "the guest ran throughout");
    } finally {
      await qemu?.kill();
      await fx.cleanup();
    }
  },
);

guestTest(
  "e2e policy: a spoofed IP or MAC no longer reaches the bridge (counters stand still), its own does again; off, spoofed passes",
  async (image) => {
    const fx = await makeFixture("espf", { octet: 132 });
    let qemu: QemuGuest | undefined;
    try {
      const [nic] = await fx.cliOk<NicConfig[]>(["add", "vm"]);
      const ns = `${fx.prefix}vm`;
      qemu = await boot(fx, "vm", image);
      const own = nic.ips[0];
      const gw = own.gateway!;
      const spoofed = own.address.replace(/\.\d+$/, ".250");
      assert.ok(await hostPings(own.address), "its own address answers");

      // Another IP: the host's pings go unanswered; the guest's frames are
      // no longer redirected.
      const swap = (from: string, to: string) =>
        qemu!.sh(
          `ip addr del ${from}/${own.prefix} dev eth0; ` +
            `ip addr add ${to}/${own.prefix} dev eth0; ` +
            `ip route add default via ${gw} dev eth0 2>/dev/null; true`,
        );
      // (Its IPv6 link-local traffic still carries its own MAC and address.)
      const v4 = ["ip", "arp"];
      await swap(own.address, spoofed);
      let before = await redirected(ns, nic.tap, v4);
      assert.equal(await guestPings(qemu, gw), false, "spoofed IP: no reply");
      assert.equal(await hostPings(spoofed), false, "host cannot reach it");
      let after = await redirected(ns, nic.tap, v4);
      assert.equal(after, before, `not redirected: ${before} → ${after}`);
      await swap(spoofed, own.address);
      assert.ok(await guestPings(qemu, gw), "its own IP again: replies");
      assert.ok(await hostPings(own.address));

      // Another MAC.
      const otherMac = "0a:58:de:ad:be:ef";
      const setMac = (mac: string) =>
        qemu!.sh(
          `ip link set eth0 down; ip link set eth0 address ${mac}; ` +
            `ip link set eth0 up; ip route add default via ${gw} dev eth0 ` +
            `2>/dev/null; true`,
        );
      await setMac(otherMac);
      before = await redirected(ns, nic.tap);
      assert.equal(await guestPings(qemu, gw), false, "spoofed MAC: no reply");
      after = await redirected(ns, nic.tap);
      assert.equal(after, before, `not redirected: ${before} → ${after}`);
      await setMac(nic.mac!);
      assert.ok(await guestPings(qemu, gw), "its own MAC again: replies");

      // Anti-spoofing off, live: the spoofed IP passes.
      await fx.cliOk(["policy", "vm", "0", "--allow-spoofing"]);
      await swap(own.address, spoofed);
      assert.ok(await guestPings(qemu, gw), "off: the spoofed IP passes");
      assert.ok(await hostPings(spoofed), "off: the host reaches it");
    } finally {
      await qemu?.kill();
      await fx.cleanup();
    }
  },
);

guestTest(
  "e2e policy: a denied address is unreachable while an allowed one answers; the metadata address is denied by default; a rule added live takes effect",
  async (image) => {
    const fx = await makeFixture("eegr", { octet: 133 });
    let qemu: QemuGuest | undefined;
    // Addresses of the test's own (throwaway) host netns, behind the
    // gateway: on its loopback (this kernel has no dummy devices).
    const denied = "192.0.2.10";
    const allowed = "192.0.2.20";
    const live = "192.0.2.30";
    const added: string[] = [];
    try {
      for (const a of [denied, allowed, live, "169.254.169.254"]) {
        await sh("ip", "addr", "add", `${a}/32`, "dev", "lo");
        added.push(a);
      }
      await fx.cliOk(["add", "vm", "--egress-deny", `${denied}/32`]);
      qemu = await boot(fx, "vm", image);
      assert.ok(await guestPings(qemu, allowed), `${allowed} answers`);
      assert.equal(await guestPings(qemu, denied), false, `${denied} denied`);
      assert.equal(
        await guestPings(qemu, "169.254.169.254"),
        false,
        "the metadata address is denied by default",
      );
      assert.ok(await guestPings(qemu, live), `${live} answers before`);
      await fx.cliOk([
        "policy",
        "vm",
        "0",
        "--egress-deny",
        `${denied}/32`,
        "--egress-deny",
        `${live}/32`,
      ]);
      assert.equal(await guestPings(qemu, live), false, `${live} denied live`);
      assert.ok(await guestPings(qemu, allowed), `${allowed} still answers`);
      await fx.cliOk(["policy", "vm", "0", "--reset", "egress"]);
      assert.ok(await guestPings(qemu, denied), `${denied} answers again`);
    } finally {
      await qemu?.kill();
      for (const a of added) {
        await run("ip", ["addr", "del", `${a}/32`, "dev", "lo"]);
      }
      await fx.cleanup();
    }
  },
);

guestTest(
  "e2e policy: two isolated guests cannot reach each other and both reach the gateway; without isolation they can",
  async (image) => {
    const fx = await makeFixture("eiso", { octet: 134 });
    const guests: QemuGuest[] = [];
    try {
      const [a] = await fx.cliOk<NicConfig[]>(["add", "a", "--isolate"]);
      const [b] = await fx.cliOk<NicConfig[]>(["add", "b", "--isolate"]);
      guests.push(await boot(fx, "a", image), await boot(fx, "b", image));
      const [ga, gb] = guests;
      const gw = a.ips[0].gateway!;
      assert.ok(await guestPings(ga, gw), "a reaches the gateway");
      assert.ok(await guestPings(gb, gw), "b reaches the gateway");
      assert.equal(await guestPings(ga, b.ips[0].address), false, "a ↛ b");
      assert.equal(await guestPings(gb, a.ips[0].address), false, "b ↛ a");
      for (const vm of ["a", "b"]) {
        await fx.cliOk(["policy", vm, "0", "--no-isolate"]);
      }
      assert.ok(await guestPings(ga, b.ips[0].address), "a → b");
      assert.ok(await guestPings(gb, a.ips[0].address), "b → a");
    } finally {
      for (const g of guests) await g.kill();
      await fx.cleanup();
    }
  },
);

guestTest(
  "e2e policy: with Debian's portmap in the chain, a TCP connection to the host port reaches httpd in the guest",
  async (image) => {
    const fx = await makeFixture("eport", {
      octet: 135,
      extraPlugins: [{
        type: "portmap",
        capabilities: { portMappings: true },
        snat: false,
      }],
    });
    let qemu: QemuGuest | undefined;
    try {
      const [nic] = await fx.cliOk<NicConfig[]>([
        "add",
        "vm",
        "--port",
        "18080:8080/tcp",
      ]);
      assert.deepEqual(nic.capabilityArgs, {
        portMappings: [{
          hostPort: 18080,
          containerPort: 8080,
          protocol: "tcp",
        }],
      });
      qemu = await boot(fx, "vm", image);
      const served = await qemu.sh(
        "mkdir -p /tmp/www && echo VMNIC-PORTMAP-OK > /tmp/www/index.html && " +
          "httpd -p 8080 -h /tmp/www",
      );
      assert.equal(served.code, 0, served.out);
      // The host's own address on the bridge, port 18080: DNAT to the guest.
      const gw = nic.ips[0].gateway!;
      const got = await httpGet(gw, 18080);
      assert.match(got, /VMNIC-PORTMAP-OK/, got);
      const nat = await sh("iptables-save", "-t", "nat");
      assert.match(nat, /--dport 18080 .*DNAT|DNAT.*18080/s);
      // Delete takes the mapping with it (DEL got the same args).
      await qemu.kill();
      qemu = undefined;
      await fx.cliOk(["delete", "vm"]);
      const after = await sh("iptables-save", "-t", "nat");
      assert.doesNotMatch(after, /to-destination [0-9.]+:8080/);
    } finally {
      await qemu?.kill();
      await fx.cleanup();
    }
  },
);
