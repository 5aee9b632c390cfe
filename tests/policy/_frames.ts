/**
 * Frames for the policy's data-path tests: builders of Ethernet, IPv4,
 * ARP, IPv6 and ICMPv6 (NDP) frames, and two ways to put them on the wire
 * in a netns — written into a TAP as a guest would (its ingress), or sent
 * out of a device with a packet socket (its peer's ingress).
 *
 * @module
 */
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
import { withNetns } from "../../src/kernel/netns.ts";
import { parseCidr } from "../../src/kernel/ipaddr.ts";
import { parseMac } from "../../src/netlink/codec.ts";
import { IfEther, Socket } from "../../src/netlink/constants.ts";
import { cstr, libc } from "../../src/sys/libc.ts";

/** sizeof(struct virtio_net_hdr) without VIRTIO_NET_F_MRG_RXBUF. */
const VIRTIO_NET_HDR_LEN = 10;
/** sizeof(struct sockaddr_ll). */
const SOCKADDR_LL_LEN = 20;

function ipBytes(a: string): Uint8Array {
  return parseCidr(a).bytes;
}

function u16(v: number): number[] {
  return [(v >> 8) & 0xff, v & 0xff];
}

/** An Ethernet frame. */
export function eth(
  dst: string,
  src: string,
  type: number,
  payload: Uint8Array,
): Uint8Array {
  return Uint8Array.from([
    ...parseMac(dst),
    ...parseMac(src),
    ...u16(type),
    ...payload,
  ]);
}

/** An IPv4 packet (checksum left 0: the filters never look at it). */
export function ipv4(
  src: string,
  dst: string,
  proto: number,
  payload: Uint8Array,
  opts: { ihl?: number } = {},
): Uint8Array {
  const ihl = opts.ihl ?? 5;
  const hdr = new Uint8Array(ihl * 4);
  hdr[0] = 0x40 | ihl;
  hdr.set(u16(ihl * 4 + payload.length), 2);
  hdr[8] = 64;
  hdr[9] = proto;
  hdr.set(ipBytes(src), 12);
  hdr.set(ipBytes(dst), 16);
  return Uint8Array.from([...hdr, ...payload]);
}

/** A TCP or UDP header's ports and some bytes (enough for the filters). */
export function l4(sport: number, dport: number): Uint8Array {
  return Uint8Array.from([...u16(sport), ...u16(dport), 0, 8, 0, 0]);
}

/** An ARP packet for Ethernet and IPv4. */
export function arp(
  op: 1 | 2,
  sha: string,
  spa: string,
  tha: string,
  tpa: string,
): Uint8Array {
  return Uint8Array.from([
    0,
    1,
    0x08,
    0x00,
    6,
    4,
    ...u16(op),
    ...parseMac(sha),
    ...ipBytes(spa),
    ...parseMac(tha),
    ...ipBytes(tpa),
  ]);
}

/** An IPv6 packet. */
export function ipv6(
  src: string,
  dst: string,
  nextHeader: number,
  payload: Uint8Array,
): Uint8Array {
  return Uint8Array.from([
    0x60,
    0,
    0,
    0,
    ...u16(payload.length),
    nextHeader,
    255,
    ...ipBytes(src),
    ...ipBytes(dst),
    ...payload,
  ]);
}

/**
 * An ICMPv6 neighbor solicitation (135) or advertisement (136) for
 * `target`, with a link-layer option carrying `lladdr` when given.
 */
export function nd(
  type: 135 | 136,
  target: string,
  lladdr?: string,
): Uint8Array {
  const opt = lladdr ? [type === 135 ? 1 : 2, 1, ...parseMac(lladdr)] : [];
  return Uint8Array.from([
    type,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    ...ipBytes(target),
    ...opt,
  ]);
}

/** An ICMPv6 message of `type` with an empty body (RS 133, RA 134, …). */
export function icmp6(type: number, body = 4): Uint8Array {
  return Uint8Array.from([type, 0, 0, 0, ...new Array(body).fill(0)]);
}

/** Broadcast MAC. */
export const BROADCAST = "ff:ff:ff:ff:ff:ff";

/** A TAP attached as a guest would: what is written enters its ingress. */
export class TapWriter {
  readonly #fd: number;
  private constructor(fd: number) {
    this.#fd = fd;
  }

  /** Attaches to TAP `name` (made with a vnet header) in the netns at `path`. */
  static attach(path: string, name: string): TapWriter {
    const fd = withNetns(path, () => {
      const fd = libc().open(cstr("/dev/net/tun"), O_RDWR | O_CLOEXEC, 0);
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
    return new TapWriter(fd);
  }

  /** Writes one frame (behind a zero virtio-net header). */
  write(frame: Uint8Array): void {
    const buf = new Uint8Array(VIRTIO_NET_HDR_LEN + frame.length);
    buf.set(frame, VIRTIO_NET_HDR_LEN);
    if (Number(libc().write(this.#fd, buf, BigInt(buf.length))) < 0) {
      throw new Error("write to TAP");
    }
  }

  /** Detaches. */
  close(): void {
    libc().close(this.#fd);
  }
}

/** A packet socket on one device: what is sent leaves it (its peer's ingress). */
export class PacketSender {
  readonly #fd: number;
  readonly #addr: Uint8Array;
  private constructor(fd: number, addr: Uint8Array) {
    this.#fd = fd;
    this.#addr = addr;
  }

  /** A socket on device `ifindex` of the netns at `path` (null: this one). */
  static open(path: string | null, ifindex: number): PacketSender {
    const make = () => {
      const fd = libc().socket(Socket.AF_PACKET, Socket.SOCK_RAW, 0);
      if (fd < 0) throw new Error("socket(AF_PACKET)");
      return fd;
    };
    const fd = path ? withNetns(path, make) : make();
    const addr = new Uint8Array(SOCKADDR_LL_LEN);
    const v = new DataView(addr.buffer);
    v.setUint16(0, Socket.AF_PACKET, true);
    v.setUint16(
      2,
      ((IfEther.ETH_P_ALL & 0xff) << 8) | (IfEther.ETH_P_ALL >> 8),
      true,
    );
    v.setInt32(4, ifindex, true);
    return new PacketSender(fd, addr);
  }

  /** Sends one whole Ethernet frame. */
  send(frame: Uint8Array): void {
    const n = libc().sendto(
      this.#fd,
      frame,
      BigInt(frame.length),
      0,
      this.#addr,
      this.#addr.length,
    );
    if (Number(n) < 0) throw new Error("sendto(AF_PACKET)");
  }

  /** Closes the socket. */
  close(): void {
    libc().close(this.#fd);
  }
}
