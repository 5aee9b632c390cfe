/**
 * A tiny userspace "guest" for the end-to-end wiring test: attaches to a TAP
 * (`IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, as vmnic creates it), answers ARP
 * requests for its IPv4 address and ICMP echo requests to it, and ignores
 * everything else.
 *
 * Usage (inside the TAP's netns, e.g. via `nsenter --net=...`):
 *   deno run --allow-ffi tests/wiring/tap_echo.ts TAP IPV4 MAC [SECONDS]
 *
 * Prints `ready` once attached, then `arp-reply` / `echo-reply` per answer.
 * Exits when stdin closes or after SECONDS (default 60), printing
 * `summary arp=N echo=M`. Never blocks for long: it polls with a timeout.
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
import { parseMac } from "../../src/netlink/codec.ts";
import { IfEther } from "../../src/netlink/constants.ts";

/** sizeof(struct virtio_net_hdr) without VIRTIO_NET_F_MRG_RXBUF. */
const VIRTIO_NET_HDR_LEN = 10;
/** <poll.h> */
const POLLIN = 0x1;
const POLL_TIMEOUT_MS = 100;
/** <linux/if_ether.h> */
const ETH_P_ARP = 0x0806;
const ETH_HLEN = 14;
/** <linux/if_arp.h> */
const ARPOP_REQUEST = 1;
const ARPOP_REPLY = 2;
/** <netinet/in.h>, <netinet/ip_icmp.h> */
const IPPROTO_ICMP = 1;
const ICMP_ECHOREPLY = 0;
const ICMP_ECHO = 8;
const REPLY_TTL = 64;

const libc = Deno.dlopen("libc.so.6", {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  // On a worker thread, so the event loop still sees stdin closing.
  poll: {
    parameters: ["buffer", "u64", "i32"],
    result: "i32",
    nonblocking: true,
  },
}).symbols;

const [tapName, ipText, macText, secondsText] = Deno.args;
if (!tapName || !ipText || !macText) {
  console.error("usage: tap_echo.ts TAP IPV4 MAC [SECONDS]");
  Deno.exit(2);
}
const myIp = Uint8Array.from(ipText.split(".").map(Number));
const myMac = parseMac(macText);
const deadline = Date.now() + Number(secondsText ?? 60) * 1000;

const fd = attach(tapName);
let stop = false;
// Closing our stdin is the parent's way of saying "done".
(async () => {
  for await (const _ of Deno.stdin.readable) { /* drain */ }
  stop = true;
})();

const counts = { arp: 0, echo: 0 };
console.log("ready");
const pollfd = new Uint8Array(8); // struct pollfd { int fd; short events, revents; }
const pv = new DataView(pollfd.buffer);
const buf = new Uint8Array(VIRTIO_NET_HDR_LEN + 65536);
try {
  while (!stop && Date.now() < deadline) {
    pv.setInt32(0, fd, true);
    pv.setInt16(4, POLLIN, true);
    pv.setInt16(6, 0, true);
    const ready = await libc.poll(pollfd, 1n, POLL_TIMEOUT_MS);
    if (ready <= 0 || !(pv.getInt16(6, true) & POLLIN)) continue;
    const n = Number(libc.read(fd, buf, BigInt(buf.length)));
    if (n <= VIRTIO_NET_HDR_LEN) continue;
    const reply = answer(buf.slice(VIRTIO_NET_HDR_LEN, n));
    if (!reply) continue;
    // A zeroed virtio_net_hdr: no offloads, checksums complete.
    const out = new Uint8Array(VIRTIO_NET_HDR_LEN + reply.frame.length);
    out.set(reply.frame, VIRTIO_NET_HDR_LEN);
    if (libc.write(fd, out, BigInt(out.length)) === BigInt(out.length)) {
      counts[reply.kind]++;
      console.log(reply.kind === "arp" ? "arp-reply" : "echo-reply");
    }
  }
} finally {
  libc.close(fd);
}
console.log(`summary arp=${counts.arp} echo=${counts.echo}`);
Deno.exit(0);

/** Opens /dev/net/tun and attaches to the existing TAP `name`. */
function attach(name: string): number {
  const path = new TextEncoder().encode("/dev/net/tun\0");
  const tun = libc.open(path, O_RDWR | O_CLOEXEC, 0);
  if (tun < 0) throw new Error("open /dev/net/tun failed");
  const ifreq = new Uint8Array(IFREQ_SIZE);
  ifreq.set(new TextEncoder().encode(name));
  new DataView(ifreq.buffer).setUint16(
    IFNAMSIZ,
    IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
    true,
  );
  if (libc.ioctl(tun, BigInt(TUNSETIFF), ifreq) < 0) {
    throw new Error(`TUNSETIFF ${name} failed`);
  }
  return tun;
}

/** The reply to a frame, if it is an ARP request or ping for us. */
function answer(
  frame: Uint8Array,
): { kind: "arp" | "echo"; frame: Uint8Array } | null {
  if (frame.length < ETH_HLEN) return null;
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const ethertype = v.getUint16(12);
  if (ethertype === ETH_P_ARP) return arpReply(frame, v);
  if (ethertype === IfEther.ETH_P_IP) return echoReply(frame, v);
  return null;
}

function arpReply(
  frame: Uint8Array,
  v: DataView,
): { kind: "arp"; frame: Uint8Array } | null {
  const arp = ETH_HLEN; // htype, ptype, hlen, plen, oper, sha, spa, tha, tpa
  if (frame.length < arp + 28 || v.getUint16(arp + 6) !== ARPOP_REQUEST) {
    return null;
  }
  if (!equal(frame.subarray(arp + 24, arp + 28), myIp)) return null;
  const out = frame.slice(0, arp + 28);
  const ov = new DataView(out.buffer);
  const senderMac = frame.slice(arp + 8, arp + 14);
  const senderIp = frame.slice(arp + 14, arp + 18);
  out.set(senderMac, 0);
  out.set(myMac, 6);
  ov.setUint16(arp + 6, ARPOP_REPLY);
  out.set(myMac, arp + 8);
  out.set(myIp, arp + 14);
  out.set(senderMac, arp + 18);
  out.set(senderIp, arp + 24);
  return { kind: "arp", frame: out };
}

function echoReply(
  frame: Uint8Array,
  v: DataView,
): { kind: "echo"; frame: Uint8Array } | null {
  const ip = ETH_HLEN;
  if (frame.length < ip + 20) return null;
  const ihl = (frame[ip] & 0x0f) * 4;
  const total = v.getUint16(ip + 2);
  if (frame[ip + 9] !== IPPROTO_ICMP || frame.length < ip + total) return null;
  if (!equal(frame.subarray(ip + 16, ip + 20), myIp)) return null;
  const icmp = ip + ihl;
  if (frame[icmp] !== ICMP_ECHO) return null;

  const out = frame.slice(0, ip + total);
  const ov = new DataView(out.buffer);
  out.set(frame.subarray(6, 12), 0); // dst MAC = their source
  out.set(myMac, 6);
  out.set(frame.subarray(ip + 16, ip + 20), ip + 12); // src IP = us
  out.set(frame.subarray(ip + 12, ip + 16), ip + 16); // dst IP = them
  out[ip + 8] = REPLY_TTL;
  ov.setUint16(ip + 10, 0);
  ov.setUint16(ip + 10, checksum(out.subarray(ip, ip + ihl)));
  out[icmp] = ICMP_ECHOREPLY;
  ov.setUint16(icmp + 2, 0);
  ov.setUint16(icmp + 2, checksum(out.subarray(icmp, ip + total)));
  return { kind: "echo", frame: out };
}

/** The Internet checksum (RFC 1071). */
function checksum(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i + 1 < b.length; i += 2) sum += (b[i] << 8) | b[i + 1];
  if (b.length % 2) sum += b[b.length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
