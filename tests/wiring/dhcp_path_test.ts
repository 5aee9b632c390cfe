/**
 * The DHCP path through vmnic's TC redirects (docs/datapath.md, "DHCP"):
 * on a network whose IPAM is CNI's `dhcp`, the plugin's daemon keeps the
 * lease from the VM's netns with a packet socket on the veth (AF_PACKET,
 * SOCK_DGRAM, ETH_P_IP, bound to the veth), which sees only the frames no
 * TC filter redirected. With `TapPolicy.dhcp`:
 *
 * - the compiled programs start with the DHCP rules, whatever else the
 *   policy has (a reply kept in the netns, the guest's DHCP not sent on);
 * - on the real kernel, a DHCP reply sent toward the guest (unicast to
 *   the NIC's MAC, or broadcast) reaches such a socket and not the TAP,
 *   while other traffic still goes to the guest and not to the socket;
 *   without the rule (what vmnic did before) the reply went to the TAP
 *   and the socket never saw it;
 * - DHCP the guest sends (from 0.0.0.0 or from its address) is not
 *   redirected; its other traffic is.
 */
import assert from "node:assert/strict";
import {
  getLinkByName,
  setInet6AddrGenMode,
  setLinkUp,
  setMac,
} from "../../src/kernel/link.ts";
import { IfEther, IfLink, Socket } from "../../src/netlink/constants.ts";
import { withNetns } from "../../src/kernel/netns.ts";
import { createTap } from "../../src/kernel/tuntap.ts";
import { NetlinkSocket } from "../../src/netlink/socket.ts";
import { libc } from "../../src/sys/libc.ts";
import {
  applyTapPolicy,
  compileTapPolicy,
  OPEN_POLICY,
  REDIRECT_ALL,
  redirectCount,
  type TapPolicy,
} from "../../src/wiring/tap_policy.ts";
import {
  rootTest,
  sh,
  uniquePrefix,
  withScratchNetns,
} from "../support/harness.ts";
import { BROADCAST, eth, ipv4, l4, PacketSender } from "../policy/_frames.ts";
import {
  IFF_NO_PI,
  IFF_TAP,
  IFF_VNET_HDR,
  IFNAMSIZ,
  IFREQ_SIZE,
  O_CLOEXEC,
  O_RDWR,
  TUNSETIFF,
} from "../../src/kernel/constants.ts";

const MAC = "0a:58:0a:d5:00:05";
const SERVER_MAC = "0a:58:0a:d5:00:01";
const IP = "10.213.0.5";
const SERVER = "10.213.0.1";
const IPV4 = IfEther.ETH_P_IP;
const UDP = 17;
const DHCP_SERVER = 67, DHCP_CLIENT = 68;
/** sizeof(struct sockaddr_ll). */
const SOCKADDR_LL_LEN = 20;
/** SOCK_DGRAM: the dhcp plugin's packet socket gets the IP packet only. */
const SOCK_DGRAM = 2;
/** Room for one frame. */
const RECV_BUF = 2048;
/** `<fcntl.h>` O_NONBLOCK. */
const O_NONBLOCK = 0o4000;
/** sizeof(struct virtio_net_hdr) without VIRTIO_NET_F_MRG_RXBUF. */
const VNET_HDR_LEN = 10;
/** Ethernet header and the IPv4 protocol's offset in a frame. */
const ETH_HLEN = 14;

const ANTI: TapPolicy = {
  ...OPEN_POLICY,
  ipv4: [IP],
  antiSpoofing: true,
  dhcp: true,
};

Deno.test("dhcp path: the DHCP rules come first in both programs, whatever the policy", () => {
  const variants: [string, TapPolicy][] = [
    ["no policy", { ...OPEN_POLICY, dhcp: true }],
    ["anti-spoofing", ANTI],
    [
      "anti-spoofing, egress, isolate",
      {
        ...ANTI,
        egress: [{ action: "deny", cidr: "10.0.0.0/8" }],
        isolate: { subnets: ["10.213.0.0/24"], gateways: [SERVER] },
      },
    ],
  ];
  for (const [what, p] of variants) {
    const prog = compileTapPolicy({ ...p, mac: MAC });
    assert.match(prog.veth[0].note, /^keep DHCP replies in the netns/, what);
    assert.equal(prog.veth[0].redirect, false, what);
    assert.match(prog.tap[0].note, /^deny DHCP from the guest/, what);
    assert.equal(prog.tap[0].redirect, false, what);
    assert.ok(
      !prog.tap.some((r) => r.redirect && /DHCP/.test(r.note)),
      `${what}: no rule lets the guest's DHCP out`,
    );
  }
  const plain = compileTapPolicy({ ...OPEN_POLICY, dhcp: true, mac: MAC });
  assert.deepEqual(plain.veth.slice(1), [REDIRECT_ALL]);
  assert.deepEqual(plain.tap.slice(1), [REDIRECT_ALL]);
  // Quiesced (the veth up for the daemon): nothing toward the TAP.
  const quiesced = compileTapPolicy({ ...ANTI, quiesced: true, mac: MAC });
  assert.deepEqual(quiesced.veth.map((r) => r.redirect), [false]);
  assert.match(quiesced.veth[0].note, /^keep DHCP replies/);
  const none = compileTapPolicy({ ...OPEN_POLICY, mac: MAC });
  assert.deepEqual(none, { veth: [REDIRECT_ALL], tap: [REDIRECT_ALL] });
});

/** UDP destination port of an IPv4 packet at `off` in `buf`, or null. */
function udpDport(buf: Uint8Array, off: number): number | null {
  if (buf[off + 9] !== UDP) return null;
  const ihl = (buf[off] & 0x0f) * 4;
  return (buf[off + ihl + 2] << 8) | buf[off + ihl + 3];
}

/**
 * The TAP as the guest holds it (non-blocking): frames written enter its
 * ingress; what vmnic redirects to it is read back.
 */
class GuestTap {
  private constructor(readonly fd: number) {}

  static attach(path: string, name: string): GuestTap {
    const fd = withNetns(path, () => {
      const fd = libc().open(
        new TextEncoder().encode("/dev/net/tun\0"),
        O_RDWR | O_CLOEXEC | O_NONBLOCK,
        0,
      );
      if (fd < 0) throw new Error("open /dev/net/tun");
      const ifreq = new Uint8Array(IFREQ_SIZE);
      ifreq.set(new TextEncoder().encode(name));
      new DataView(ifreq.buffer).setUint16(
        IFNAMSIZ,
        IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
        true,
      );
      if (libc().ioctl(fd, BigInt(TUNSETIFF), ifreq) < 0) {
        libc().close(fd);
        throw new Error(`TUNSETIFF ${name}`);
      }
      return fd;
    });
    return new GuestTap(fd);
  }

  write(frame: Uint8Array): void {
    const buf = new Uint8Array(VNET_HDR_LEN + frame.length);
    buf.set(frame, VNET_HDR_LEN);
    if (Number(libc().write(this.fd, buf, BigInt(buf.length))) < 0) {
      throw new Error("write to TAP");
    }
  }

  /** UDP destination ports of the IPv4 frames the guest got so far. */
  drain(): number[] {
    const ports: number[] = [];
    const buf = new Uint8Array(VNET_HDR_LEN + RECV_BUF);
    while (true) {
      const n = Number(libc().read(this.fd, buf, BigInt(buf.length)));
      if (n <= 0) return ports;
      const type = (buf[VNET_HDR_LEN + 12] << 8) | buf[VNET_HDR_LEN + 13];
      if (type !== IPV4) continue;
      const port = udpDport(buf, VNET_HDR_LEN + ETH_HLEN);
      if (port !== null) ports.push(port);
    }
  }

  close(): void {
    libc().close(this.fd);
  }
}

/** A packet socket as the dhcp plugin opens one: ETH_P_IP on one device. */
class DhcpSocket {
  private constructor(readonly fd: number) {}

  static open(path: string, ifindex: number): DhcpSocket {
    const proto = ((IPV4 & 0xff) << 8) | (IPV4 >> 8);
    const fd = withNetns(path, () => {
      const fd = libc().socket(Socket.AF_PACKET, SOCK_DGRAM, proto);
      if (fd < 0) throw new Error("socket(AF_PACKET, SOCK_DGRAM)");
      return fd;
    });
    const addr = new Uint8Array(SOCKADDR_LL_LEN);
    const v = new DataView(addr.buffer);
    v.setUint16(0, Socket.AF_PACKET, true);
    v.setUint16(2, proto, true);
    v.setInt32(4, ifindex, true);
    if (libc().bind(fd, addr, addr.length) < 0) {
      libc().close(fd);
      throw new Error("bind(AF_PACKET)");
    }
    return new DhcpSocket(fd);
  }

  /** The UDP destination ports of the IPv4 packets queued so far. */
  drain(): number[] {
    const ports: number[] = [];
    const buf = new Uint8Array(RECV_BUF);
    while (true) {
      const n = Number(
        libc().recv(this.fd, buf, BigInt(buf.length), Socket.MSG_DONTWAIT),
      );
      if (n <= 0) return ports;
      const port = udpDport(buf, 0);
      if (port !== null) ports.push(port);
    }
  }

  close(): void {
    libc().close(this.fd);
  }
}

interface Bench {
  sock: NetlinkSocket;
  tap: GuestTap;
  host: PacketSender;
  dhcp: DhcpSocket;
}

/** A VM netns with eth0 (its peer here) and tap0, wired with `policy`. */
async function withBench(
  policy: TapPolicy,
  fn: (b: Bench) => Promise<void>,
): Promise<void> {
  const prefix = uniquePrefix("dhp");
  const hostEnd = `hd${Deno.pid.toString(36)}${
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
      // Silent: no IPv6 DAD, RS or MLD of its own toward the guest.
      await sh("ip", "link", "set", hostEnd, "addrgenmode", "none");
      await sh("ip", "link", "set", hostEnd, "up");
      const sock = withNetns(path, () => NetlinkSocket.open());
      const opened: { close(): void }[] = [sock];
      try {
        withNetns(path, () => createTap({ name: "tap0", vnetHdr: true }));
        setMac(sock, "eth0", MAC);
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
        const tap = GuestTap.attach(path, "tap0");
        opened.push(tap);
        const here = NetlinkSocket.open();
        const hostIndex = getLinkByName(here, hostEnd)!.index;
        here.close();
        const host = PacketSender.open(null, hostIndex);
        opened.push(host);
        const dhcp = DhcpSocket.open(path, getLinkByName(sock, "eth0")!.index);
        opened.push(dhcp);
        await fn({ sock, tap, host, dhcp });
      } finally {
        for (const o of opened.reverse()) o.close();
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

/**
 * A UDP frame toward the guest: the ports of what the guest's TAP and the
 * daemon's socket got of it (other traffic, e.g. the host end's own, is
 * left out by port).
 */
async function towardGuest(
  b: Bench,
  frame: Uint8Array,
  port: number,
): Promise<{ toGuest: number[]; toDaemon: number[] }> {
  b.dhcp.drain();
  b.tap.drain();
  b.host.send(frame);
  // Redirect and delivery happen in the sender's softirq: a moment suffices.
  await new Promise((r) => setTimeout(r, 50));
  const mine = (ports: number[]) => ports.filter((p) => p === port);
  return { toGuest: mine(b.tap.drain()), toDaemon: mine(b.dhcp.drain()) };
}

const reply = (dstMac: string, dst: string) =>
  eth(
    dstMac,
    SERVER_MAC,
    IPV4,
    ipv4(SERVER, dst, UDP, l4(DHCP_SERVER, DHCP_CLIENT)),
  );
const OTHER_PORT = 5353;
const other = eth(
  MAC,
  SERVER_MAC,
  IPV4,
  ipv4(SERVER, IP, UDP, l4(OTHER_PORT, OTHER_PORT)),
);

rootTest(
  "dhcp path: a DHCP reply reaches the netns's packet socket (the dhcp daemon's) and not the guest; everything else the guest",
  async () => {
    await withBench(ANTI, async (b) => {
      assert.deepEqual(await towardGuest(b, reply(MAC, IP), DHCP_CLIENT), {
        toGuest: [],
        toDaemon: [DHCP_CLIENT],
      }, "a unicast reply (a renewal's ACK)");
      assert.deepEqual(
        await towardGuest(
          b,
          reply(BROADCAST, "255.255.255.255"),
          DHCP_CLIENT,
        ),
        { toGuest: [], toDaemon: [DHCP_CLIENT] },
        "a broadcast reply",
      );
      assert.deepEqual(await towardGuest(b, other, OTHER_PORT), {
        toGuest: [OTHER_PORT],
        toDaemon: [],
      }, "other UDP goes to the guest, unseen by the socket");
    });
  },
);

rootTest(
  "dhcp path: without the DHCP rules (vmnic before), the reply goes to the guest and the daemon's socket never sees it",
  async () => {
    await withBench({ ...ANTI, dhcp: false }, async (b) => {
      assert.deepEqual(await towardGuest(b, reply(MAC, IP), DHCP_CLIENT), {
        toGuest: [DHCP_CLIENT],
        toDaemon: [],
      });
    });
  },
);

rootTest(
  "dhcp path: the guest's own DHCP is not sent on; its other traffic is",
  async () => {
    await withBench(ANTI, async (b) => {
      const fromGuest = (frame: Uint8Array) =>
        redirected(b, "tap0", () => b.tap.write(frame));
      const discover = eth(
        BROADCAST,
        MAC,
        IPV4,
        ipv4("0.0.0.0", "255.255.255.255", UDP, l4(DHCP_CLIENT, DHCP_SERVER)),
      );
      const release = eth(
        SERVER_MAC,
        MAC,
        IPV4,
        ipv4(IP, SERVER, UDP, l4(DHCP_CLIENT, DHCP_SERVER)),
      );
      const dns = eth(
        SERVER_MAC,
        MAC,
        IPV4,
        ipv4(IP, SERVER, UDP, l4(40000, 53)),
      );
      assert.equal(await fromGuest(discover), false, "DISCOVER from 0.0.0.0");
      assert.equal(await fromGuest(release), false, "RELEASE from its address");
      assert.equal(await fromGuest(dns), true, "other UDP from its address");
    });
    // Without anti-spoofing too.
    await withBench({ ...OPEN_POLICY, dhcp: true }, async (b) => {
      const release = eth(
        SERVER_MAC,
        MAC,
        IPV4,
        ipv4(IP, SERVER, UDP, l4(DHCP_CLIENT, DHCP_SERVER)),
      );
      assert.equal(
        await redirected(b, "tap0", () => b.tap.write(release)),
        false,
      );
    });
  },
);
