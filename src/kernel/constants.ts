/**
 * Kernel constants the namespace and TAP code passes to libc, named and
 * grouped as the kernel/libc headers name them, so no call site carries a
 * bare number.
 *
 * @module
 */

/** `<linux/sched.h>`: namespace kinds for `unshare(2)` and `setns(2)`. */
export const CLONE_NEWNET = 0x40000000;

/** `<linux/mount.h>`: `mount(2)` flags. */
export const MS_BIND = 0x1000;
/** `<linux/mount.h>`: apply recursively to the whole subtree. */
export const MS_REC = 0x4000;
/** `<linux/mount.h>`: make the mount shared (propagates both ways). */
export const MS_SHARED = 1 << 20;

/** `<linux/mount.h>`: `umount2(2)` flag, lazy detach. */
export const MNT_DETACH = 0x2;

export {
  LOCK_EX,
  LOCK_NB,
  LOCK_SH,
  LOCK_UN,
  O_CLOEXEC,
  O_CREAT,
  O_DIRECTORY,
  O_EXCL,
  O_NOFOLLOW,
  O_PATH,
  O_RDONLY,
  O_RDWR,
} from "../sys/fcntl.ts";

/** `<linux/nsfs.h>`: ioctl returning the `CLONE_NEW*` kind of an nsfs fd. */
export const NS_GET_NSTYPE = 0xb703; // _IO(NSIO 0xb7, 0x3)

/** `<linux/if.h>`: interface name buffer size, NUL included. */
export const IFNAMSIZ = 16;
/** `<linux/if.h>`: `sizeof(struct ifreq)` on 64-bit. */
export const IFREQ_SIZE = 40;

/** `<linux/if_tun.h>`: ioctls on `/dev/net/tun` (`_IOW('T', n, int)`). */
export const TUNSETIFF = 0x400454ca;
/** `<linux/if_tun.h>` */
export const TUNSETPERSIST = 0x400454cb;
/** `<linux/if_tun.h>` */
export const TUNSETOWNER = 0x400454cc;
/** `<linux/if_tun.h>` */
export const TUNSETGROUP = 0x400454ce;

/** `<linux/if_tun.h>`: `ifr_flags` bits for `TUNSETIFF`. */
export const IFF_TAP = 0x0002;
/** `<linux/if_tun.h>` */
export const IFF_MULTI_QUEUE = 0x0100;
/** `<linux/if_tun.h>` */
export const IFF_NO_PI = 0x1000;
/** `<linux/if_tun.h>` */
export const IFF_VNET_HDR = 0x4000;
/** `<linux/if_tun.h>`: fail with EBUSY instead of attaching to an existing device. */
export const IFF_TUN_EXCL = 0x8000;

/** `<linux/magic.h>`: filesystem magic of nsfs (namespace files). */
export const NSFS_MAGIC = 0x6e736673;
