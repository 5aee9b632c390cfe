/**
 * What traffic control this kernel has, found by asking it: each qdisc,
 * classifier and action kind is requested on the loopback device of a
 * fresh, unnamed netns, without the options it needs. A kind the kernel
 * lacks is refused with `ENOENT` ("TC classifier not found", "Failed to
 * load TC action module", "Specified qdisc kind is unknown"); a kind it has
 * refuses the missing options instead (or, for u32, makes an empty
 * classifier), and the netns goes away with whatever was made.
 *
 * @module
 */
import { type Attr, nla } from "../netlink/codec.ts";
import {
  IfEther,
  Netlink,
  PktCls,
  PktSched,
  Rtnl,
  Socket,
} from "../netlink/constants.ts";
import { encodeTcMsg, htons } from "../netlink/route.ts";
import type { NetlinkConn } from "../netlink/conn.ts";
import { NetlinkSocket } from "../netlink/socket.ts";
import { Errno } from "../sys/errno.ts";
import { isErrno } from "../sys/errors.ts";
import { getLinkByName } from "./link.ts";
import { withFreshNetns } from "./netns.ts";
import {
  addIngressQdisc,
  INGRESS_PARENT,
  MATCH_ALL_KEY,
  TcStruct,
} from "./tc.ts";
import { encodeU32Selector } from "./tc.ts";

/** The traffic-control kinds vmnic's policy can use, and whether this kernel has each. */
export interface TcFeatures {
  /** `ingress` qdisc: where the redirect filters sit (required). */
  ingress: boolean;
  /** `u32` classifier: the redirect filters and the allow-list (required). */
  u32: boolean;
  /** `mirred` action: the redirect itself (required). */
  mirred: boolean;
  /** `tbf` qdisc: rate limits. */
  tbf: boolean;
  /** `htb` qdisc: rate limits with classes. */
  htb: boolean;
  /** `gact` action: an explicit drop. */
  gact: boolean;
  /** `police` action: rate limits on ingress. */
  police: boolean;
  /** `flower` classifier. */
  flower: boolean;
  /** `matchall` classifier. */
  matchall: boolean;
}

/** The kinds {@linkcode probeTcFeatures} asks for, by feature. */
const QDISCS = { tbf: "tbf", htb: "htb" } as const;
const CLASSIFIERS = {
  u32: "u32",
  flower: "flower",
  matchall: "matchall",
} as const;
const ACTIONS = { mirred: "mirred", gact: "gact", police: "police" } as const;

/** The loopback device, in every netns. */
const LOOPBACK = "lo";

/**
 * Asks this kernel which traffic-control kinds it has, in a fresh netns
 * (nothing real is touched). Needs CAP_NET_ADMIN.
 *
 * @throws {KernelError} when the netns or its socket cannot be made.
 */
export function probeTcFeatures(): TcFeatures {
  return withFreshNetns(() => {
    const sock = NetlinkSocket.open();
    try {
      return probeOn(sock);
    } finally {
      sock.close();
    }
  });
}

/** The probes, on the loopback device of `sock`'s netns. */
export function probeOn(sock: NetlinkConn): TcFeatures {
  const lo = getLinkByName(sock, LOOPBACK);
  if (!lo) throw new Error("probe tc: no loopback device");
  let ingress = true;
  try {
    addIngressQdisc(sock, lo.index, { label: LOOPBACK, ignoreExisting: true });
  } catch (e) {
    if (!isErrno(e, Errno.ENOENT, Errno.EOPNOTSUPP)) throw e;
    ingress = false;
  }
  const has = (fn: () => void): boolean => {
    try {
      fn();
      return true;
    } catch (e) {
      if (isErrno(e, Errno.ENOENT, Errno.EOPNOTSUPP)) return false;
      return true; // the kind exists and refused what it was not given
    }
  };
  const qdisc = (kind: string) =>
    has(() =>
      sock.request({
        type: Rtnl.RTM_NEWQDISC,
        flags: Netlink.NLM_F_CREATE | Netlink.NLM_F_EXCL,
        header: encodeTcMsg({
          family: Socket.AF_UNSPEC,
          ifindex: lo.index,
          parent: PktSched.TC_H_ROOT,
        }),
        attrs: [nla.str(Rtnl.TCA_KIND, kind)],
      }, { op: "probe qdisc", object: kind })
    );
  let prio = 0;
  // A new filter on the ingress qdisc, at a priority of its own.
  const addFilter = (attrs: Attr[], op: string, kind: string) =>
    has(() =>
      sock.request({
        type: Rtnl.RTM_NEWTFILTER,
        flags: Netlink.NLM_F_CREATE | Netlink.NLM_F_EXCL,
        header: encodeTcMsg({
          family: Socket.AF_UNSPEC,
          ifindex: lo.index,
          parent: INGRESS_PARENT,
          info: ((++prio << 16) | htons(IfEther.ETH_P_ALL)) >>> 0,
        }),
        attrs,
      }, { op, object: kind })
    );
  const classifier = (kind: string) =>
    ingress &&
    addFilter([nla.str(Rtnl.TCA_KIND, kind)], "probe classifier", kind);
  const u32 = classifier(CLASSIFIERS.u32);
  // An action is asked for as the one action of a u32 filter.
  const action = (kind: string) =>
    ingress && u32 && addFilter(
      [
        nla.str(Rtnl.TCA_KIND, CLASSIFIERS.u32),
        nla.nested(Rtnl.TCA_OPTIONS, [
          nla.nested(PktCls.TCA_U32_ACT, [
            nla.nested(TcStruct.TCA_ACT_FIRST_ORDER, [
              nla.str(PktCls.TCA_ACT_KIND, kind),
            ]),
          ]),
          nla.bytes(
            PktCls.TCA_U32_SEL,
            encodeU32Selector("probe action", kind, [MATCH_ALL_KEY]),
          ),
        ]),
      ],
      "probe action",
      kind,
    );
  return {
    ingress,
    u32,
    mirred: action(ACTIONS.mirred),
    tbf: qdisc(QDISCS.tbf),
    htb: qdisc(QDISCS.htb),
    gact: action(ACTIONS.gact),
    police: action(ACTIONS.police),
    flower: classifier(CLASSIFIERS.flower),
    matchall: classifier(CLASSIFIERS.matchall),
  };
}
