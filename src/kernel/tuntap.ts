/**
 * Persistent TAP devices through `/dev/net/tun`: `TUNSETIFF` creates the
 * device, `TUNSETPERSIST` keeps it after the fd is closed, so a hypervisor
 * can attach to it by name later. The device is created in the calling
 * thread's netns: wrap the call in `withNetns` to make it in a VM's netns.
 * Deleting one is a netlink operation (the link module).
 *
 * @module
 */
import { InvalidArgumentError, KernelError } from "../sys/errors.ts";
import { cstr, errno, libc } from "../sys/libc.ts";
import {
  IFF_MULTI_QUEUE,
  IFF_NO_PI,
  IFF_TAP,
  IFF_TUN_EXCL,
  IFF_VNET_HDR,
  IFNAMSIZ,
  IFREQ_SIZE,
  O_CLOEXEC,
  O_RDWR,
  TUNSETGROUP,
  TUNSETIFF,
  TUNSETOWNER,
  TUNSETPERSIST,
} from "./constants.ts";
import { validateIfName } from "./ifname.ts";

/** The TUN/TAP clone device. */
const TUN_DEVICE = "/dev/net/tun";

/** What {@linkcode createTap} makes. */
export interface TapOptions {
  /** Interface name (validated as the kernel does). */
  name: string;
  /**
   * One queue per fd the hypervisor opens (`IFF_MULTI_QUEUE`). Leave off for
   * Firecracker, which refuses multi-queue TAPs.
   */
  multiQueue?: boolean;
  /** virtio-net header on each frame (`IFF_VNET_HDR`). Default `true`. */
  vnetHdr?: boolean;
  /** uid allowed to attach besides root (`TUNSETOWNER`). */
  owner?: number;
  /** gid allowed to attach (`TUNSETGROUP`). */
  group?: number;
}

/**
 * Creates a persistent TAP device (`IFF_TAP | IFF_NO_PI`) in the calling
 * thread's netns. When a step after `TUNSETIFF` fails the fd is closed
 * before persisting, so the device vanishes with it.
 *
 * @throws {InvalidArgumentError} for a bad name; nothing is created.
 * @throws {KernelError} `EBUSY` when a device of that name exists, or the
 * failing ioctl's errno.
 */
export function createTap(opts: TapOptions): void {
  const { name } = opts;
  validateIfName(name);
  for (const key of ["owner", "group"] as const) {
    const id = opts[key];
    if (
      id !== undefined && !(Number.isInteger(id) && id >= 0 && id < 2 ** 32)
    ) {
      throw new InvalidArgumentError("create tap", name, `bad ${key} ${id}`);
    }
  }
  const fd = libc().open(cstr(TUN_DEVICE), O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) throw new KernelError("create tap", name, errno(), TUN_DEVICE);
  try {
    // struct ifreq: ifr_name[IFNAMSIZ], then the union with ifr_flags (short).
    const ifreq = new Uint8Array(IFREQ_SIZE);
    ifreq.set(new TextEncoder().encode(name));
    let flags = IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL; // EXCL: never reuse a device
    if (opts.vnetHdr ?? true) flags |= IFF_VNET_HDR;
    if (opts.multiQueue) flags |= IFF_MULTI_QUEUE;
    new DataView(ifreq.buffer).setUint16(IFNAMSIZ, flags, true);
    if (libc().ioctl(fd, BigInt(TUNSETIFF), ifreq) < 0) {
      throw new KernelError("create tap", name, errno(), "TUNSETIFF");
    }
    if (opts.owner !== undefined) {
      tunIoctl(fd, TUNSETOWNER, opts.owner, name, "TUNSETOWNER");
    }
    if (opts.group !== undefined) {
      tunIoctl(fd, TUNSETGROUP, opts.group, name, "TUNSETGROUP");
    }
    tunIoctl(fd, TUNSETPERSIST, 1, name, "TUNSETPERSIST");
  } finally {
    libc().close(fd);
  }
}

/** A TUN ioctl whose argument is the integer value itself. */
function tunIoctl(
  fd: number,
  request: number,
  value: number,
  name: string,
  step: string,
): void {
  if (libc().ioctl_int(fd, BigInt(request), BigInt(value)) < 0) {
    throw new KernelError("create tap", name, errno(), step);
  }
}

/**
 * Checks that the TUN/TAP clone device can be opened (the `tun` module is
 * loaded and we may use it). Opened through libc: Deno's own file APIs
 * refuse `/dev` paths without `--allow-all`.
 *
 * @throws {KernelError} ("open", "/dev/net/tun") with the errno otherwise.
 */
export function checkTunDevice(): void {
  const fd = libc().open(cstr(TUN_DEVICE), O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) throw new KernelError("open", TUN_DEVICE, errno());
  libc().close(fd);
}
