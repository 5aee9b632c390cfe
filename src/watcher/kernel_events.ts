/**
 * The kernel notifications the watcher acts on, decoded from rtnetlink
 * messages: a link that changed or went (name, admin state, carrier,
 * master), a qdisc or filter that went, a netns id that went (its netns
 * died). And one query: a link's carrier, read in another netns through
 * its id, without entering it.
 *
 * @module
 */
import { Attrs, type NetlinkMessage, nla } from "../netlink/codec.ts";
import type { NetlinkConn } from "../netlink/conn.ts";
import { If, IfLink, Rtnl, Socket } from "../netlink/constants.ts";
import {
  decodeIfInfoMsg,
  decodeTcMsg,
  encodeIfInfoMsg,
} from "../netlink/route.ts";
import { decodeNsidMessage } from "../kernel/nsid.ts";
import { validateIfName } from "../kernel/ifname.ts";
import { Errno } from "../sys/errno.ts";
import { isErrno } from "../sys/errors.ts";

/** A link notification (RTM_NEWLINK / RTM_DELLINK). */
export interface LinkEvent {
  /** A link. */
  kind: "link";
  /** RTM_DELLINK: the device went (or, for `bridgePort`, left its bridge). */
  deleted: boolean;
  /** An AF_BRIDGE message: about the device as a bridge port. */
  bridgePort: boolean;
  /** ifindex. */
  index: number;
  /** IFLA_IFNAME ("" when absent). */
  name: string;
  /** Administratively up (IFF_UP). */
  up: boolean;
  /** IFLA_CARRIER, when sent. */
  carrier?: boolean;
  /** IFLA_MASTER: the bridge's ifindex; absent when on none. */
  master?: number;
  /** IFLA_LINK: for a veth, its peer's ifindex (in the peer's netns). */
  link?: number;
}

/** A qdisc or filter notification (RTM_*QDISC, RTM_*TFILTER). */
export interface TcEvent {
  /** Traffic control. */
  kind: "tc";
  /** RTM_DELQDISC / RTM_DELTFILTER. */
  deleted: boolean;
  /** The device's ifindex. */
  ifindex: number;
}

/** A netns id notification (RTM_NEWNSID / RTM_DELNSID). */
export interface NsidEvent {
  /** A netns id. */
  kind: "nsid";
  /** RTM_DELNSID: that netns is gone (destroyed). */
  deleted: boolean;
  /** The id. */
  nsid: number;
}

/** What the watcher hears. */
export type KernelEvent = LinkEvent | TcEvent | NsidEvent;

/** The notification as a {@linkcode KernelEvent}, or null when it is none of them. */
export function decodeKernelEvent(m: NetlinkMessage): KernelEvent | null {
  switch (m.type) {
    case Rtnl.RTM_NEWLINK:
    case Rtnl.RTM_DELLINK:
      return decodeLinkEvent(m);
    case Rtnl.RTM_NEWQDISC:
    case Rtnl.RTM_DELQDISC:
    case Rtnl.RTM_NEWTFILTER:
    case Rtnl.RTM_DELTFILTER:
      return {
        kind: "tc",
        deleted: m.type === Rtnl.RTM_DELQDISC ||
          m.type === Rtnl.RTM_DELTFILTER,
        ifindex: decodeTcMsg(m.body).msg.ifindex,
      };
    case Rtnl.RTM_NEWNSID:
    case Rtnl.RTM_DELNSID: {
      const nsid = decodeNsidMessage(m.body);
      return nsid === null
        ? null
        : { kind: "nsid", deleted: m.type === Rtnl.RTM_DELNSID, nsid };
    }
    default:
      return null;
  }
}

function decodeLinkEvent(m: NetlinkMessage): LinkEvent {
  const { msg, rest } = decodeIfInfoMsg(m.body);
  const a = Attrs.parse(rest);
  const carrier = a.u8(IfLink.IFLA_CARRIER);
  const master = a.u32(IfLink.IFLA_MASTER);
  const link = a.u32(IfLink.IFLA_LINK);
  return {
    kind: "link",
    deleted: m.type === Rtnl.RTM_DELLINK,
    bridgePort: msg.family === Socket.AF_BRIDGE,
    index: msg.index,
    name: a.str(IfLink.IFLA_IFNAME) ?? "",
    up: (msg.flags & If.IFF_UP) !== 0,
    ...(carrier === undefined ? {} : { carrier: carrier !== 0 }),
    ...(master ? { master } : {}),
    ...(link ? { link } : {}),
  };
}

/**
 * The link `name` of the netns whose id (in the socket's netns) is `nsid`,
 * as a {@linkcode LinkEvent}, read without entering that netns
 * (IFLA_TARGET_NETNSID); null when it has no such link.
 */
export function readLink(
  sock: NetlinkConn,
  nsid: number,
  name: string,
): LinkEvent | null {
  validateIfName(name);
  try {
    const replies = sock.request({
      type: Rtnl.RTM_GETLINK,
      flags: 0,
      header: encodeIfInfoMsg({ family: Socket.AF_UNSPEC }),
      attrs: [
        nla.str(IfLink.IFLA_IFNAME, name),
        nla.i32(IfLink.IFLA_TARGET_NETNSID, nsid),
      ],
    }, { op: "get link", object: `${name} (netns id ${nsid})` });
    const m = replies.find((r) => r.type === Rtnl.RTM_NEWLINK);
    return m ? decodeLinkEvent(m) : null;
  } catch (e) {
    if (isErrno(e, Errno.ENODEV)) return null;
    throw e;
  }
}
