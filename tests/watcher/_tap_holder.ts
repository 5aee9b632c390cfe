/**
 * A hypervisor stand-in, as its own process: opens a TAP (`TUNSETIFF` on
 * `/dev/net/tun`, in the netns it was started in, e.g. under `nsenter
 * --net=…`), prints `attached`, and holds it until killed, as a hypervisor
 * holds its NIC: the TAP has a carrier exactly as long as this lives.
 *
 * Usage: _tap_holder.ts TAP [multi]
 *
 * @module
 */
import {
  IFF_MULTI_QUEUE,
  IFF_NO_PI,
  IFF_TAP,
  IFF_VNET_HDR,
  IFNAMSIZ,
  IFREQ_SIZE,
  O_CLOEXEC,
  O_RDWR,
  TUNSETIFF,
} from "../../src/kernel/constants.ts";
import { cstr, errno, libc } from "../../src/sys/libc.ts";

/** Longest hold (the test kills it long before). */
const HOLD_MS = 300_000;

const [tap, multi] = Deno.args;
if (!tap) {
  console.error("usage: _tap_holder.ts TAP [multi]");
  Deno.exit(2);
}
const fd = libc().open(cstr("/dev/net/tun"), O_RDWR | O_CLOEXEC, 0);
const ifreq = new Uint8Array(IFREQ_SIZE);
ifreq.set(new TextEncoder().encode(tap));
new DataView(ifreq.buffer).setUint16(
  IFNAMSIZ,
  IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (multi ? IFF_MULTI_QUEUE : 0),
  true,
);
if (fd < 0 || libc().ioctl(fd, BigInt(TUNSETIFF), ifreq) < 0) {
  console.error(`attach ${tap}: errno ${errno()}`);
  Deno.exit(1);
}
console.log("attached");
await new Promise((r) => setTimeout(r, HOLD_MS));
