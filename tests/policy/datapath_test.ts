/**
 * The policy's programs on the real kernel, frame by frame: a VM netns with
 * a veth (its peer in the test's host netns) and a TAP, a policy applied
 * with src/wiring/tap_policy.ts, then frames written into the TAP as a
 * guest would send them (and sent from the host side toward the guest).
 * Whether each was redirected is read from the kernel's own counters (the
 * mirred actions' statistics). Also: a live change keeps what both
 * policies allow flowing, and describeTapPolicy names what is missing.
 */
import assert from "node:assert/strict";
import {
  getLinkByName,
  setInet6AddrGenMode,
  setLinkUp,
  setMac,
} from "../../src/kernel/link.ts";
import { IfLink } from "../../src/netlink/constants.ts";
import { withNetns } from "../../src/kernel/netns.ts";
import { createTap } from "../../src/kernel/tuntap.ts";
import { deleteFilters, listFilters } from "../../src/kernel/tc.ts";
import { NetlinkSocket } from "../../src/netlink/socket.ts";
import {
  applyTapPolicy,
  compileTapPolicy,
  describeTapPolicy,
  eui64LinkLocal,
  OPEN_POLICY,
  redirectCount,
  type TapPolicy,
} from "../../src/wiring/tap_policy.ts";
import {
  ipJson,
  rootTest,
  sh,
  uniquePrefix,
  withScratchNetns,
} from "../support/harness.ts";
import {
  arp,
  BROADCAST,
  eth,
  icmp6,
  ipv4,
  ipv6,
  l4,
  nd,
  PacketSender,
  TapWriter,
} from "./_frames.ts";

const FLOOD = new URL("./_tap_flood.ts", import.meta.url).pathname;
const MAC = "0a:58:0a:63:00:05";
const OTHER_MAC = "0a:58:0a:63:00:09";
const GW_MAC = "0a:58:0a:63:00:01";
const IP = "10.99.0.5";
const PEER = "10.99.0.9";
const GW = "10.99.0.1";
const IP6 = "fd99::5";
const PEER6 = "fd99::9";
const IPV4 = 0x0800, ARP = 0x0806, IPV6 = 0x86dd;
const TCP = 6, UDP = 17, ICMP = 1, ICMP6 = 58;

const POLICY: TapPolicy = {
  mac: MAC,
  ipv4: [IP],
  ipv6: [IP6],
  antiSpoofing: true,
  dhcp: false,
  egress: [
    { action: "deny", cidr: "169.254.169.254/32" },
    { action: "allow", cidr: "10.98.0.7/32", protocol: "tcp", port: 22 },
    { action: "deny", cidr: "10.98.0.0/16", protocol: "tcp", port: 22 },
    { action: "deny", cidr: "fd98::/16", protocol: "udp" },
  ],
  isolate: { subnets: ["10.99.0.0/24", "fd99::/64"], gateways: [GW] },
  rateIn: null,
  rateOut: null,
};

interface Bench {
  path: string;
  sock: NetlinkSocket;
  tap: TapWriter;
  host: PacketSender;
  /** The host end of the veth, in this netns. */
  hostEnd: string;
}

/** The VM netns with eth0 (peer in this netns) and tap0, wired by `policy`. */
async function withBench(
  policy: TapPolicy,
  fn: (b: Bench) => Promise<void>,
  opts: { attach?: boolean } = {},
): Promise<void> {
  const prefix = uniquePrefix("pdp");
  const hostEnd = `hp${Deno.pid.toString(36)}${
    crypto.getRandomValues(new Uint16Array(1))[0].toString(36)
  }`.slice(0, 15);
  await withScratchNetns(prefix, ["vm"], async ([path]) => {
    const ns = `${prefix}vm`;
    try {
      await sh(
        "ip",
        "link",
        "add",
        hostEnd,
        "type",
        "veth",
        "peer",
        "eth0",
        "netns",
        ns,
      );
      await sh("ip", "link", "set", hostEnd, "up");
      const sock = withNetns(path, () => NetlinkSocket.open());
      let tap: TapWriter | undefined;
      let host: PacketSender | undefined;
      try {
        withNetns(path, () => createTap({ name: "tap0", vnetHdr: true }));
        setMac(sock, "eth0", MAC);
        // The netns stays silent: only the test's frames cross.
        for (const dev of ["eth0", "tap0"]) {
          setInet6AddrGenMode(sock, dev, IfLink.IN6_ADDR_GEN_MODE_NONE);
        }
        setLinkUp(sock, "eth0");
        setLinkUp(sock, "tap0");
        applyTapPolicy(
          sock,
          { veth: "eth0", tap: "tap0" },
          compileTapPolicy({ ...policy, mac: MAC }),
          policy,
        );
        if (opts.attach !== false) tap = TapWriter.attach(path, "tap0");
        const here = NetlinkSocket.open();
        const hostIndex = getLinkByName(here, hostEnd)!.index;
        here.close();
        host = PacketSender.open(null, hostIndex);
        await fn({ path, sock, tap: tap!, host, hostEnd });
      } finally {
        tap?.close();
        host?.close();
        sock.close();
      }
    } finally {
      await sh("ip", "link", "del", hostEnd).catch(() => {});
    }
  });
}

/** Whether `send` made the filters on `dev` redirect one more frame. */
async function redirected(
  b: Bench,
  dev: "tap0" | "eth0",
  send: () => void,
): Promise<boolean> {
  const before = redirectCount(b.sock, dev);
  send();
  for (let i = 0; i < 20; i++) {
    if (redirectCount(b.sock, dev) > before) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return false;
}

const fromGuest = (b: Bench, frame: Uint8Array) =>
  redirected(b, "tap0", () => b.tap.write(frame));
const towardGuest = (b: Bench, frame: Uint8Array) =>
  redirected(b, "eth0", () => b.host.send(frame));

rootTest(
  "policy data path: anti-spoofing lets only the NIC's MAC and addresses out",
  async () => {
    await withBench(POLICY, async (b) => {
      const LL = eui64LinkLocal(MAC);
      const cases: [string, Uint8Array, boolean][] = [
        [
          "IPv4 from its MAC and IP",
          eth(GW_MAC, MAC, IPV4, ipv4(IP, "8.8.8.8", UDP, l4(1000, 53))),
          true,
        ],
        [
          "IPv4 from another IP",
          eth(
            GW_MAC,
            MAC,
            IPV4,
            ipv4("10.99.0.77", "8.8.8.8", UDP, l4(1000, 53)),
          ),
          false,
        ],
        [
          "IPv4 from another MAC",
          eth(GW_MAC, OTHER_MAC, IPV4, ipv4(IP, "8.8.8.8", UDP, l4(1000, 53))),
          false,
        ],
        [
          "DHCP from 0.0.0.0 (no DHCP on this network)",
          eth(
            BROADCAST,
            MAC,
            IPV4,
            ipv4("0.0.0.0", "255.255.255.255", UDP, l4(68, 67)),
          ),
          false,
        ],
        [
          "ARP request from its address for the gateway",
          eth(BROADCAST, MAC, ARP, arp(1, MAC, IP, "00:00:00:00:00:00", GW)),
          true,
        ],
        [
          "ARP probe from 0.0.0.0 for its address",
          eth(
            BROADCAST,
            MAC,
            ARP,
            arp(1, MAC, "0.0.0.0", "00:00:00:00:00:00", IP),
          ),
          true,
        ],
        [
          "ARP with another sender address",
          eth(
            BROADCAST,
            MAC,
            ARP,
            arp(1, MAC, "10.99.0.77", "00:00:00:00:00:00", GW),
          ),
          false,
        ],
        [
          "ARP with another sender MAC",
          eth(BROADCAST, MAC, ARP, arp(2, OTHER_MAC, IP, GW_MAC, GW)),
          false,
        ],
        [
          "a frame of another type",
          eth(BROADCAST, MAC, 0x88cc, new Uint8Array(46)),
          false,
        ],
        [
          "IPv6 from its address",
          eth(GW_MAC, MAC, IPV6, ipv6(IP6, "2001:db8::1", UDP, l4(1000, 53))),
          true,
        ],
        [
          "IPv6 from its EUI-64 link-local",
          eth(GW_MAC, MAC, IPV6, ipv6(LL, "ff02::2", ICMP6, icmp6(133))),
          true,
        ],
        [
          "IPv6 from another address",
          eth(
            GW_MAC,
            MAC,
            IPV6,
            ipv6("fd99::77", "2001:db8::1", UDP, l4(1000, 53)),
          ),
          false,
        ],
        [
          "IPv6 from another link-local",
          eth(
            GW_MAC,
            MAC,
            IPV6,
            ipv6("fe80::1234", "ff02::2", ICMP6, icmp6(133)),
          ),
          false,
        ],
        [
          "DAD: an NS from :: for its address",
          eth(
            "33:33:ff:00:00:05",
            MAC,
            IPV6,
            ipv6("::", "ff02::1:ff00:5", ICMP6, nd(135, IP6)),
          ),
          true,
        ],
        [
          "an NA for its own address",
          eth(
            BROADCAST,
            MAC,
            IPV6,
            ipv6(IP6, "ff02::1", ICMP6, nd(136, IP6, MAC)),
          ),
          true,
        ],
        [
          "an NA for another VM's address",
          eth(
            BROADCAST,
            MAC,
            IPV6,
            ipv6(IP6, "ff02::1", ICMP6, nd(136, PEER6, MAC)),
          ),
          false,
        ],
        [
          "an NA for its address with another MAC",
          eth(
            BROADCAST,
            MAC,
            IPV6,
            ipv6(IP6, "ff02::1", ICMP6, nd(136, IP6, OTHER_MAC)),
          ),
          false,
        ],
        [
          "an NS with another MAC as its source option",
          eth(
            BROADCAST,
            MAC,
            IPV6,
            ipv6(IP6, "ff02::1:ff00:1", ICMP6, nd(135, "fd99::1", OTHER_MAC)),
          ),
          false,
        ],
        [
          "a router advertisement",
          eth(BROADCAST, MAC, IPV6, ipv6(LL, "ff02::1", ICMP6, icmp6(134, 12))),
          false,
        ],
      ];
      for (const [what, frame, want] of cases) {
        assert.equal(await fromGuest(b, frame), want, what);
      }
    });
  },
);

rootTest(
  "policy data path: egress rules in order, the metadata address, isolation both ways",
  async () => {
    await withBench(POLICY, async (b) => {
      const out = (dst: string, proto: number, port: number, ihl?: number) =>
        eth(GW_MAC, MAC, IPV4, ipv4(IP, dst, proto, l4(40000, port), { ihl }));
      const cases: [string, Uint8Array, boolean][] = [
        ["169.254.169.254 denied", out("169.254.169.254", TCP, 80), false],
        [
          "tcp/22 to 10.98.0.7 allowed (an earlier allow)",
          out("10.98.0.7", TCP, 22),
          true,
        ],
        ["tcp/22 to 10.98.1.1 denied", out("10.98.1.1", TCP, 22), false],
        ["tcp/80 to 10.98.1.1 allowed", out("10.98.1.1", TCP, 80), true],
        ["udp/22 to 10.98.1.1 allowed", out("10.98.1.1", UDP, 22), true],
        [
          "tcp with IP options to 10.98.1.1 denied",
          out("10.98.1.1", TCP, 80, 6),
          false,
        ],
        ["icmp to 10.98.1.1 allowed", out("10.98.1.1", ICMP, 0), true],
        [
          "udp to fd98::1 denied",
          eth(GW_MAC, MAC, IPV6, ipv6(IP6, "fd98::1", UDP, l4(1, 53))),
          false,
        ],
        [
          "tcp to fd98::1 allowed",
          eth(GW_MAC, MAC, IPV6, ipv6(IP6, "fd98::1", TCP, l4(1, 53))),
          true,
        ],
        ["isolate: to the gateway", out(GW, ICMP, 0), true],
        ["isolate: to a peer", out(PEER, ICMP, 0), false],
        [
          "isolate: to the subnet's broadcast",
          out("10.99.0.255", UDP, 9),
          false,
        ],
        [
          "isolate: ARP for a peer",
          eth(BROADCAST, MAC, ARP, arp(1, MAC, IP, "00:00:00:00:00:00", PEER)),
          false,
        ],
        [
          "isolate: to a peer's IPv6",
          eth(GW_MAC, MAC, IPV6, ipv6(IP6, PEER6, UDP, l4(1, 53))),
          false,
        ],
        [
          "isolate: link-local data",
          eth(
            GW_MAC,
            MAC,
            IPV6,
            ipv6(eui64LinkLocal(MAC), "fe80::9", UDP, l4(1, 53)),
          ),
          false,
        ],
      ];
      for (const [what, frame, want] of cases) {
        assert.equal(await fromGuest(b, frame), want, what);
      }
      const toGuest: [string, Uint8Array, boolean][] = [
        [
          "from the gateway",
          eth(MAC, GW_MAC, IPV4, ipv4(GW, IP, ICMP, l4(0, 0))),
          true,
        ],
        [
          "from outside the subnet",
          eth(MAC, GW_MAC, IPV4, ipv4("8.8.8.8", IP, UDP, l4(53, 1000))),
          true,
        ],
        [
          "from a peer",
          eth(MAC, OTHER_MAC, IPV4, ipv4(PEER, IP, ICMP, l4(0, 0))),
          false,
        ],
        [
          "ARP from the gateway",
          eth(
            BROADCAST,
            GW_MAC,
            ARP,
            arp(1, GW_MAC, GW, "00:00:00:00:00:00", IP),
          ),
          true,
        ],
        [
          "ARP from a peer",
          eth(
            BROADCAST,
            OTHER_MAC,
            ARP,
            arp(1, OTHER_MAC, PEER, "00:00:00:00:00:00", IP),
          ),
          false,
        ],
        [
          "IPv6 from a peer",
          eth(MAC, OTHER_MAC, IPV6, ipv6(PEER6, IP6, UDP, l4(1, 2))),
          false,
        ],
        [
          "an NS from a peer (no data)",
          eth(
            MAC,
            OTHER_MAC,
            IPV6,
            ipv6(PEER6, IP6, ICMP6, nd(135, IP6, OTHER_MAC)),
          ),
          true,
        ],
      ];
      for (const [what, frame, want] of toGuest) {
        assert.equal(
          await towardGuest(b, frame),
          want,
          `toward the guest: ${what}`,
        );
      }
    });
  },
);

rootTest(
  "policy data path: off, spoofed frames pass; changes made while another process sends lose none of what both policies allow",
  async () => {
    await withBench(OPEN_POLICY, async (b) => {
      const spoofed = eth(
        GW_MAC,
        OTHER_MAC,
        IPV4,
        ipv4("10.99.0.77", "8.8.8.8", UDP, l4(1, 53)),
      );
      assert.equal(
        await fromGuest(b, spoofed),
        true,
        "no policy: spoofed passes",
      );
    });
    await withBench(OPEN_POLICY, async (b) => {
      const own = eth(GW_MAC, MAC, IPV4, ipv4(IP, "8.8.8.8", UDP, l4(1, 53)));
      const pair = { veth: "eth0", tap: "tap0" };
      const rx = async () => {
        const [l] = await ipJson<{ stats64: { rx: { packets: number } } }>(
          "-s",
          "link",
          "show",
          "dev",
          b.hostEnd,
        );
        return l.stats64.rx.packets;
      };
      const before = await rx();
      const COUNT = 3000;
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-ffi",
          "--allow-read",
          FLOOD,
          b.path,
          "tap0",
          [...own].map((x) => x.toString(16).padStart(2, "0")).join(""),
          String(COUNT),
          "3",
        ],
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const out = child.output();
      // Policies both allowing `own`, switched while the child sends.
      let changes = 0;
      let done = false;
      out.finally(() => done = true);
      const strict = compileTapPolicy({ ...POLICY, mac: MAC });
      const open = compileTapPolicy({ ...OPEN_POLICY, mac: MAC });
      while (!done) {
        const p = changes % 2 === 0 ? strict : open;
        if (applyTapPolicy(b.sock, pair, p, POLICY).changed) changes++;
        await new Promise((r) => setTimeout(r, 40));
      }
      const o = await out;
      const text = new TextDecoder().decode(o.stdout);
      assert.equal(o.code, 0, new TextDecoder().decode(o.stderr));
      assert.match(text, new RegExp(`sent ${COUNT}`));
      assert.ok(changes >= 4, `changes made while sending: ${changes}`);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(
        (await rx()) - before,
        COUNT,
        `every frame reached the host across ${changes} changes`,
      );
    }, { attach: false });
  },
);

rootTest(
  "policy data path: applying twice changes nothing; verify names a rule taken away; applying mends it",
  async () => {
    await withBench(POLICY, async (b) => {
      const pair = { veth: "eth0", tap: "tap0" };
      const prog = () => compileTapPolicy({ ...POLICY, mac: MAC });
      assert.equal(applyTapPolicy(b.sock, pair, prog(), POLICY).changed, false);
      const state = describeTapPolicy(b.sock, pair, prog(), POLICY);
      assert.deepEqual(state.problems, []);
      assert.ok(state.ok && state.wired);
      const tap0 = getLinkByName(b.sock, "tap0")!;
      const victim = listFilters(b.sock, tap0.index)
        .sort((x, y) => x.prio - y.prio)
        .find((f) => f.protocol === 0x0800 && f.actions.length === 0)!;
      deleteFilters(b.sock, tap0.index, { prio: victim.prio });
      const broken = describeTapPolicy(b.sock, pair, prog(), POLICY);
      assert.equal(broken.ok, false);
      assert.match(
        broken.problems.join("\n"),
        /tap0: policy rule missing: deny 169\.254\.169\.254\/32/,
      );
      assert.ok(applyTapPolicy(b.sock, pair, prog(), POLICY).changed);
      assert.ok(describeTapPolicy(b.sock, pair, prog(), POLICY).ok);
      const own = eth(
        GW_MAC,
        MAC,
        IPV4,
        ipv4(IP, "169.254.169.254", TCP, l4(1, 80)),
      );
      assert.equal(await fromGuest(b, own), false, "the deny is back");
    });
  },
);
