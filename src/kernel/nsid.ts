/**
 * Netns ids: the number by which one network namespace knows another
 * (`ip netns list-id`). A socket with NETLINK_LISTEN_ALL_NSID hears the
 * netns that have an id in its own, tagged with it; these calls find, or
 * give, the id of a named netns, over a socket in the netns where the id
 * is to hold.
 *
 * @module
 */
import { Errno } from "../sys/errno.ts";
import { isErrno } from "../sys/errors.ts";
import { check, cstr, libc } from "../sys/libc.ts";
import { Attrs, nla } from "../netlink/codec.ts";
import type { NetlinkConn } from "../netlink/conn.ts";
import { NetNsA, Rtnl, Socket } from "../netlink/constants.ts";
import { O_CLOEXEC, O_RDONLY } from "./constants.ts";

/** sizeof(struct rtgenmsg) (one byte, the family) padded to NLMSG_ALIGNTO. */
const RTGENMSG_LEN = 4;

/**
 * The id the socket's netns gives the netns mounted at `path`, or null
 * when it has none. With `assign`, a netns without one is given one first
 * (RTM_NEWNSID, as `ip netns set NAME auto` does); it holds as long as
 * that netns lives.
 *
 * @throws {KernelError} when `path` cannot be opened (ENOENT) or is not a
 * netns (EINVAL), or the kernel refuses.
 */
export function netnsId(
  sock: NetlinkConn,
  path: string,
  opts: { assign?: boolean } = {},
): number | null {
  const fd = check(
    libc().open(cstr(path), O_RDONLY | O_CLOEXEC, 0),
    "open netns",
    path,
  );
  try {
    const id = getId(sock, fd, path);
    if (id !== null || !opts.assign) return id;
    try {
      sock.request({
        type: Rtnl.RTM_NEWNSID,
        flags: 0,
        header: rtgenmsg(),
        attrs: [
          nla.u32(NetNsA.NETNSA_FD, fd),
          nla.i32(NetNsA.NETNSA_NSID, NetNsA.NETNSA_NSID_NOT_ASSIGNED),
        ],
      }, { op: "assign netns id", object: path });
    } catch (e) {
      // Given one meanwhile (by another process): read it below.
      if (!isErrno(e, Errno.EEXIST)) throw e;
    }
    return getId(sock, fd, path);
  } finally {
    libc().close(fd);
  }
}

function getId(sock: NetlinkConn, fd: number, path: string): number | null {
  const replies = sock.request({
    type: Rtnl.RTM_GETNSID,
    flags: 0,
    header: rtgenmsg(),
    attrs: [nla.u32(NetNsA.NETNSA_FD, fd)],
  }, { op: "get netns id", object: path });
  for (const m of replies) {
    if (m.type !== Rtnl.RTM_NEWNSID) continue;
    const id = decodeNsidMessage(m.body);
    return id;
  }
  return null;
}

/**
 * The netns id an RTM_NEWNSID / RTM_DELNSID body carries (NETNSA_NSID),
 * or null when it carries none or "not assigned".
 */
export function decodeNsidMessage(body: Uint8Array): number | null {
  const raw = Attrs.parse(body.subarray(RTGENMSG_LEN)).u32(NetNsA.NETNSA_NSID);
  if (raw === undefined) return null;
  const id = raw | 0; // an s32 on the wire
  return id === NetNsA.NETNSA_NSID_NOT_ASSIGNED ? null : id;
}

function rtgenmsg(): Uint8Array {
  const b = new Uint8Array(RTGENMSG_LEN);
  b[0] = Socket.AF_UNSPEC;
  return b;
}
