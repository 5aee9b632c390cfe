/**
 * The in-memory rtnetlink of one network namespace, behind
 * {@linkcode FakeNetlinkConn}: links (loopback, veth, bridge, dummy, TAP),
 * addresses, ingress qdiscs and u32 filters with mirred actions. Requests
 * arrive as the bytes vmnic's kernel layer encodes; replies leave laid out
 * as the kernel lays them out (attribute order included), so the real
 * decoders parse them. Refusals carry the errno (and extack text) the
 * kernel gives for the same request.
 *
 * What the fake does not model (other qdiscs, u32 hash tables, moving
 * links between namespaces, routes) throws {@linkcode FakeUnsupportedError}
 * rather than a made-up errno, so a test that strays there fails loudly.
 *
 * Used through `FakeKernel` (fake_kernel.ts), which owns the namespaces.
 *
 * @module
 */
import {
  type Attr,
  Attrs,
  decodeMessages,
  encodeMessage,
  formatMac,
  type NetlinkMessage,
  nla,
} from "../../src/netlink/codec.ts";
import type {
  NetlinkConn,
  Request,
  RequestContext,
} from "../../src/netlink/conn.ts";
import {
  If,
  IfAddr,
  IfArp,
  IfEther,
  IfLink,
  Netlink,
  PktCls,
  PktSched,
  Rtnl,
  Socket,
  TcMirred,
  Veth,
} from "../../src/netlink/constants.ts";
import {
  decodeIfAddrMsg,
  decodeIfInfoMsg,
  decodeTcMsg,
  encodeIfAddrMsg,
  encodeIfInfoMsg,
  encodeTcMsg,
  htons,
  IFINFOMSG_LEN,
} from "../../src/netlink/route.ts";
import { INGRESS_HANDLE, TcStruct } from "../../src/kernel/tc.ts";
import { formatIP, IPV4_LEN, IPV6_LEN } from "../../src/kernel/ipaddr.ts";
import { Errno } from "../../src/sys/errno.ts";
import { KernelError } from "../../src/sys/errors.ts";

// Kernel values constants.ts does not carry, named after their kernel macros.

/** ETH_MIN_MTU (linux/if_ether.h): smallest MTU of Ethernet-like devices. */
const ETH_MIN_MTU = 68;
/** ETH_MAX_MTU (linux/if_ether.h): largest MTU of veth, bridge, tun. */
const ETH_MAX_MTU = 0xffff;
/** ETH_DATA_LEN: the default MTU of Ethernet-like devices. */
const ETH_DATA_LEN = 1500;
/** Loopback's MTU (drivers/net/loopback.c: 64 KiB). */
const LOOPBACK_MTU = 65536;
/** DEFAULT_TX_QUEUE_LEN (ether_setup, loopback). */
const DEFAULT_TX_QUEUE_LEN = 1000;
/** TUN_READQ_SIZE: the txqlen a new TAP starts with. */
const TUN_READQ_SIZE = 500;
/** MAX_TAP_QUEUES: TX/RX queues a multi-queue TAP is allocated with. */
const MAX_TAP_QUEUES = 256;
/** GSO_LEGACY_MAX_SIZE / GRO_LEGACY_MAX_SIZE: the defaults. */
const LEGACY_MAX_SIZE = 65536;
/** GSO_MAX_SEGS. */
const GSO_MAX_SEGS = 65535;
/** GRO_MAX_SIZE (8 × 65535, BIG TCP): the largest IFLA_GRO_MAX_SIZE taken. */
const GRO_MAX_SIZE = 8 * 65535;
/** IFALIASZ: the alias buffer, NUL included. */
const IFALIASZ = 256;
/** IF_LINK_MODE_DEFAULT (IFLA_LINKMODE). */
const IF_LINK_MODE_DEFAULT = 0;
/** IF_READY (IFLA_INET6_FLAGS): IPv6 is configured on the link. */
const IF_READY = 0x80000000;
/** The IFLA_IFNAME template the kernel expands (`veth%d`). */
const NAME_TEMPLATE = "%d";
/**
 * Flags `dev_change_flags` takes from userspace as given (besides IFF_UP and
 * IFF_PROMISC, which have their own paths); the rest of `dev->flags` stays.
 */
const GIVEN_FLAGS = If.IFF_NOARP | If.IFF_MULTICAST;
/** Flags a new Ethernet-like device starts with (ether_setup). */
const ETHER_FLAGS = If.IFF_BROADCAST | If.IFF_MULTICAST;
/** Longest interface name, NUL excluded (IFNAMSIZ - 1). */
const IFNAME_MAX = If.IFNAMSIZ - 1;
/** How many `%d` names dev_alloc_name tries (BITS_PER_BYTE * PAGE_SIZE). */
const NAME_TEMPLATE_TRIES = 32768;
/** The multicast bit of a MAC's first byte (is_multicast_ether_addr). */
const ETHER_MULTICAST_BIT = 0x01;

/** IFA_CACHEINFO: sizeof(struct ifa_cacheinfo), four u32. */
const IFA_CACHEINFO_LEN = 16;
/** INFINITY_LIFE_TIME: the lifetime of a permanent address. */
const INFINITY_LIFE_TIME = 0xffffffff;
/** Longest IPv4 / IPv6 prefix. */
const IPV4_MAX_PREFIX = 32;
const IPV6_MAX_PREFIX = 128;
/** The IPv6 link-local prefix, fe80::/64. */
const LINK_LOCAL_PREFIX = [0xfe, 0x80];
const LINK_LOCAL_PREFIX_LEN = 64;
/** Modified EUI-64 (RFC 4291, appendix A): U/L bit flipped, ff:fe inserted. */
const EUI64_UL_BIT = 0x02;
const EUI64_FILLER = [0xff, 0xfe];
/** 127.0.0.1/8 and ::1/128, which loopback gets when it comes up. */
const LOOPBACK_V4 = Uint8Array.of(127, 0, 0, 1);
const LOOPBACK_V4_PREFIX = 8;
const LOOPBACK_V6 = Uint8Array.of(
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  1,
);

/** TCA_CLS_FLAGS_IN_HW / NOT_IN_HW (linux/pkt_cls.h): set by the kernel. */
const TCA_CLS_FLAGS_IN_HW = 1 << 2;
const TCA_CLS_FLAGS_NOT_IN_HW = 1 << 3;
/** u32's root hash table `800:` and the node ids inside a hash table. */
const U32_ROOT_HT = 0x80000000;
const U32_HTID_MASK = 0xfff00000;
const U32_NODE_MASK = 0x00000fff;
const U32_FIRST_NODE = 0x800;
/** tcf_auto_prio: the priority of the first filter added without one. */
const AUTO_PRIO = 0xc000;
/** tc_new_tfilter's search key when the priority is left to the kernel. */
const AUTO_PRIO_SEARCH = 0x8000;
/** offsetof(struct tc_gen, refcnt) and (bindcnt). */
const TC_GEN_REFCNT_OFF = 12;
const TC_GEN_BINDCNT_OFF = 16;
/** sizeof(struct tcf_t): install, lastuse, expires, firstuse (u64 each). */
const TCF_T_LEN = 32;
/** Reference counts the kernel reports: a root qdisc, an ingress qdisc. */
const ROOT_QDISC_REFCNT = 2;
const INGRESS_QDISC_REFCNT = 1;
/** The default root qdisc of a TAP (systemd's net.core.default_qdisc). */
const TAP_ROOT_QDISC = "fq_codel";
/** The root qdisc of IFF_NO_QUEUE devices (veth, bridge, lo, dummy). */
const NO_QUEUE_ROOT_QDISC = "noqueue";
/** A down device's qdisc. */
const DOWN_ROOT_QDISC = "noop";

/** MACs the fake hands out: locally administered, unicast (02:fa:…). */
const FAKE_MAC_PREFIX = [0x02, 0xfa];

// ------------------------------------------------------------- public types

/** Every kernel step the fake serves, as failure rules and the log name it. */
export type FakeKernelOp =
  | "newlink"
  | "dellink"
  | "setlink"
  | "getlink"
  | "dumplinks"
  | "newaddr"
  | "deladdr"
  | "dumpaddrs"
  | "newqdisc"
  | "delqdisc"
  | "dumpqdiscs"
  | "newtfilter"
  | "deltfilter"
  | "dumpfilters"
  | "createTap"
  | "ensureNetns"
  | "deleteNetns"
  | "renameNetns"
  | "releaseNetnsDir";

/** The steps that change something (a failure rule without `op` hits these). */
export const CHANGING_OPS: ReadonlySet<FakeKernelOp> = new Set<FakeKernelOp>([
  "newlink",
  "dellink",
  "setlink",
  "newaddr",
  "deladdr",
  "newqdisc",
  "delqdisc",
  "newtfilter",
  "deltfilter",
  "createTap",
  "ensureNetns",
  "deleteNetns",
  "renameNetns",
]);

/** One step asked of the fake kernel, as its log keeps it. */
export interface KernelCall {
  /** The netns (its path, or `"host"`). */
  netns: string;
  /** The step. */
  op: FakeKernelOp;
  /** Its object: a device, a netns name, `*` for dumps. */
  object: string;
  /** The errno it failed with, if it failed. */
  errno?: number;
  /** The failure was injected by a failure rule. */
  injected?: boolean;
}

/** What the fake kernel does before each step: log it, maybe fail it. */
export interface RtnlHooks {
  /** Called once a request's target is known; throws an injected failure. */
  step(
    ns: RtnlNamespace,
    op: FakeKernelOp,
    object: string,
    ctx: RequestContext,
  ): KernelCall;
}

/** Device kinds the fake models (`loopback` has no IFLA_INFO_KIND on the wire). */
export type LinkKind = "loopback" | "veth" | "bridge" | "dummy" | "tun";

/** How a TAP was made (`createTap`). */
export interface TapInfo {
  /** IFF_MULTI_QUEUE. */
  multiQueue: boolean;
  /** IFF_VNET_HDR. */
  vnetHdr: boolean;
  /** TUNSETOWNER, when given. */
  owner?: number;
  /** TUNSETGROUP, when given. */
  group?: number;
}

/** A link as tests see it (a copy; changing it changes nothing). */
export interface FakeLinkView {
  /** ifindex. */
  index: number;
  /** Name. */
  name: string;
  /** Kind. */
  kind: LinkKind;
  /** MTU. */
  mtu: number;
  /** MAC, `aa:bb:cc:dd:ee:ff`. */
  mac: string;
  /** Administratively up. */
  up: boolean;
  /** Up with carrier (IFF_RUNNING). */
  running: boolean;
  /** ifindex of the master (bridge), when enslaved. */
  master?: number;
  /** Transmit queue length. */
  txqlen: number;
  /** IFLA_IFALIAS, when set. */
  alias?: string;
  /** IFLA_INET6_ADDR_GEN_MODE. */
  addrGenMode: number;
  /** IFLA_GRO_MAX_SIZE. */
  groMaxSize: number;
  /** A veth's other end: its netns label, index and name. */
  peer?: { netns: string; index: number; name: string };
  /** How a TAP was made. */
  tap?: TapInfo;
  /** The qdisc in the ingress slot. */
  ingress: "ingress" | "clsact" | null;
}

/** An address as tests see it. */
export interface FakeAddrView {
  /** The device's name. */
  dev: string;
  /** The device's index. */
  index: number;
  /** IP version. */
  family: 4 | 6;
  /** The local address. */
  address: string;
  /** Prefix length. */
  prefix: number;
  /** `address/prefix`. */
  cidr: string;
  /** RT_SCOPE_*. */
  scope: number;
  /** IFA_F_*. */
  flags: number;
}

/** A mirred action as tests see it. */
export interface FakeMirredView {
  /** The action's index in the netns' mirred table. */
  index: number;
  /** Out of (egress) or into (ingress) the target. */
  direction: "egress" | "ingress";
  /** Redirect or mirror. */
  action: "redirect" | "mirror";
  /** Target ifindex; 0 once the target device is gone, as the kernel shows it. */
  ifindex: number;
}

/** A u32 filter node as tests see it. */
export interface FakeFilterView {
  /** Priority. */
  prio: number;
  /** Ethernet protocol, host order. */
  protocol: number;
  /** Node handle (`800::800` = 0x80000800). */
  handle: number;
  /** Chain. */
  chain: number;
  /** The selector matches every frame. */
  matchAll: boolean;
  /** Its mirred actions. */
  actions: FakeMirredView[];
}

/**
 * A part of rtnetlink the fake does not model. Thrown instead of an errno
 * so a test relying on it fails loudly.
 */
export class FakeUnsupportedError extends Error {
  constructor(what: string) {
    super(`fake kernel: ${what} is not modelled`);
    this.name = "FakeUnsupportedError";
  }
}

/**
 * A refusal of the modelled kernel: its errno and extack text. The
 * connection turns it into the {@linkcode KernelError} the real socket
 * would throw; `FakeKernel` does the same for its by-hand helpers.
 */
export class KernelRefusal extends Error {
  /** The errno. */
  readonly errno: number;
  /** The kernel's extack message, when it gives one. */
  readonly detail?: string;
  constructor(errno: number, detail?: string) {
    super(`errno ${errno}${detail ? `: ${detail}` : ""}`);
    this.name = "KernelRefusal";
    this.errno = errno;
    this.detail = detail;
  }

  /** The KernelError a caller of the real kernel layer would see. */
  toKernelError(op: string, object: string): KernelError {
    return new KernelError(op, object, this.errno, this.detail);
  }
}

function refuse(errno: number, detail?: string): never {
  throw new KernelRefusal(errno, detail);
}

function unsupported(what: string): never {
  throw new FakeUnsupportedError(what);
}

// ------------------------------------------------------------------ model

interface MirredState {
  index: number;
  /** tc_gen.action (TC_ACT_*). */
  action: number;
  /** TCA_*_REDIR / TCA_*_MIRROR. */
  eaction: number;
  /** Target; 0 once it is gone. */
  ifindex: number;
}

interface U32Node {
  handle: number;
  sel: Uint8Array;
  flags: number;
  actions: MirredState[];
}

interface TcProto {
  chain: number;
  prio: number;
  /** Host order. */
  protocol: number;
  nodes: U32Node[];
}

interface IngressSlot {
  kind: "ingress" | "clsact" | null;
  /** The device ever had an ingress queue (deletion then leaves a placeholder). */
  ever: boolean;
  tps: TcProto[];
}

interface LinkState {
  index: number;
  name: string;
  kind: LinkKind;
  mtu: number;
  mac: Uint8Array;
  /** Administrative flags (IFF_UP, …); the kernel-derived ones are computed. */
  flags: number;
  master: number;
  txqlen: number;
  alias: string;
  addrGenMode: number;
  groMaxSize: number;
  gsoMaxSize: number;
  numTxQueues: number;
  numRxQueues: number;
  peer?: { ns: RtnlNamespace; index: number };
  tap?: TapInfo;
  ingress: IngressSlot;
  /** addrconf ran for this up period (the link-local address was made). */
  ipv6Configured: boolean;
}

interface AddrState {
  index: number;
  family: 4 | 6;
  local: Uint8Array;
  /** The peer of a point-to-point address. */
  peer?: Uint8Array;
  prefix: number;
  scope: number;
  flags: number;
  label?: string;
  broadcast?: Uint8Array;
}

/** What a new link starts as. */
export interface NewLinkSpec {
  /** Name (a `%d` template is expanded). */
  name: string;
  /** Kind. */
  kind: LinkKind;
  /** MTU; the kind's default otherwise. */
  mtu?: number;
  /** MAC; a fresh one otherwise. */
  mac?: Uint8Array;
  /** ifindex to take; the next free one otherwise. */
  index?: number;
  /** For a TAP. */
  tap?: TapInfo;
  /** Transmit queue length; the kind's default otherwise. */
  txqlen?: number;
}

/** One reply message before encoding. */
export interface Reply {
  /** `RTM_*` type. */
  type: number;
  /** The family header. */
  header: Uint8Array;
  /** Its attributes. */
  attrs: Attr[];
}

/** Every namespace of one fake kernel, and what they share. */
export class RtnlWorld {
  /** The namespaces alive. */
  readonly namespaces: Set<RtnlNamespace> = new Set();
  readonly #hooks: RtnlHooks;
  #nextNsId = 0;
  #nextMac = 1;
  #nextPort = 1;

  constructor(hooks: RtnlHooks) {
    this.#hooks = hooks;
  }

  /** The hooks every request passes through. */
  get hooks(): RtnlHooks {
    return this.#hooks;
  }

  /** A new namespace with its loopback (index 1, down). */
  create(label: string): RtnlNamespace {
    const ns = new RtnlNamespace(this, this.#nextNsId++, label);
    this.namespaces.add(ns);
    return ns;
  }

  /** A MAC no link of this world has had. */
  newMac(): Uint8Array {
    const n = this.#nextMac++;
    return Uint8Array.of(
      ...FAKE_MAC_PREFIX,
      (n >>> 24) & 0xff,
      (n >>> 16) & 0xff,
      (n >>> 8) & 0xff,
      n & 0xff,
    );
  }

  /** A netlink port id for a new connection. */
  newPort(): number {
    return this.#nextPort++;
  }

  /** Runs what the kernel does asynchronously after a change (addrconf). */
  settle(): void {
    for (const ns of this.namespaces) ns.settle();
  }
}

/** The rtnetlink state of one network namespace. */
export class RtnlNamespace {
  /** Unique in its world; used as the netnsid peers report. */
  readonly id: number;
  /** Its path (the latest, after a rename), or `"host"`. */
  label: string;
  readonly #world: RtnlWorld;
  readonly #links = new Map<number, LinkState>();
  #addrs: AddrState[] = [];
  #nextIndex = 1;
  #nextAction = 1;
  #alive = true;

  constructor(world: RtnlWorld, id: number, label: string) {
    this.#world = world;
    this.id = id;
    this.label = label;
    this.createLink({ name: "lo", kind: "loopback" });
  }

  /** False once destroyed. */
  get alive(): boolean {
    return this.#alive;
  }

  /** The world it belongs to. */
  get world(): RtnlWorld {
    return this.#world;
  }

  // ------------------------------------------------------------- lookups

  /** The link called `name`. */
  byName(name: string): LinkState | undefined {
    for (const l of this.#links.values()) if (l.name === name) return l;
    return undefined;
  }

  /** The link with ifindex `index`. */
  byIndex(index: number): LinkState | undefined {
    return this.#links.get(index);
  }

  /** The link called `name`, or ENODEV. */
  requireLink(name: string): LinkState {
    return this.byName(name) ?? refuse(Errno.ENODEV);
  }

  /**
   * dev_valid_name, then dev_alloc_name for a `%d` template: EINVAL for a
   * bad name, ENFILE when every number is taken.
   */
  #expandName(name: string): string {
    const bytes = new TextEncoder().encode(name).length;
    if (
      bytes === 0 || bytes > IFNAME_MAX || name === "." || name === ".." ||
      /[/:\s]/.test(name)
    ) {
      refuse(Errno.EINVAL);
    }
    if (!name.includes("%")) return name;
    const at = name.indexOf(NAME_TEMPLATE);
    if (at < 0 || name.indexOf("%", at + 1) >= 0) refuse(Errno.EINVAL);
    for (let i = 0; i < NAME_TEMPLATE_TRIES; i++) {
      const candidate = name.replace(NAME_TEMPLATE, String(i));
      if (candidate.length > IFNAME_MAX) break;
      if (!this.byName(candidate)) return candidate;
    }
    return refuse(Errno.ENFILE);
  }

  /** Links in ifindex order. */
  #sortedLinks(): LinkState[] {
    return [...this.#links.values()].sort((a, b) => a.index - b.index);
  }

  // ------------------------------------------------------- link changes

  /**
   * Adds a link (down). Refuses a taken or invalid name (EEXIST, EINVAL)
   * and an MTU outside the kind's range (EINVAL).
   */
  createLink(spec: NewLinkSpec): LinkState {
    const name = this.#expandName(spec.name);
    if (this.byName(name)) refuse(Errno.EEXIST);
    const mtu = spec.mtu ?? defaultMtu(spec.kind);
    checkMtu(spec.kind, mtu);
    if (spec.index !== undefined && this.#links.has(spec.index)) {
      refuse(Errno.EBUSY);
    }
    const index = spec.index ?? this.#nextIndex;
    this.#nextIndex = Math.max(this.#nextIndex, index + 1);
    const queues = spec.tap?.multiQueue ? MAX_TAP_QUEUES : 1;
    const link: LinkState = {
      index,
      name,
      kind: spec.kind,
      mtu,
      mac: spec.kind === "loopback"
        ? new Uint8Array(IfEther.ETH_ALEN)
        : spec.mac ?? this.#world.newMac(),
      flags: spec.kind === "loopback" ? If.IFF_LOOPBACK : ETHER_FLAGS,
      master: 0,
      txqlen: spec.txqlen ??
        (spec.kind === "tun" ? TUN_READQ_SIZE : DEFAULT_TX_QUEUE_LEN),
      alias: "",
      addrGenMode: IfLink.IN6_ADDR_GEN_MODE_EUI64,
      groMaxSize: LEGACY_MAX_SIZE,
      gsoMaxSize: LEGACY_MAX_SIZE,
      numTxQueues: queues,
      numRxQueues: queues,
      ingress: { kind: null, ever: false, tps: [] },
      ipv6Configured: false,
      ...(spec.tap ? { tap: { ...spec.tap } } : {}),
    };
    if (spec.mac) checkEtherAddr(spec.mac);
    this.#links.set(index, link);
    return link;
  }

  /**
   * Creates a veth pair: `name` here, `peerName` in `peerNs` (this one by
   * default). The peer is made first, as veth_newlink does, so it gets the
   * lower index when both are here.
   */
  createVeth(
    name: string,
    peerName: string,
    opts: {
      peerNs?: RtnlNamespace;
      mtu?: number;
      peerMtu?: number;
      mac?: Uint8Array;
      peerMac?: Uint8Array;
      index?: number;
      peerIndex?: number;
    } = {},
  ): { link: LinkState; peer: LinkState } {
    const peerNs = opts.peerNs ?? this;
    const expanded = this.#expandName(name);
    if (this.byName(expanded)) refuse(Errno.EEXIST);
    const peer = peerNs.createLink({
      name: peerName,
      kind: "veth",
      mtu: opts.peerMtu ?? opts.mtu,
      mac: opts.peerMac,
      index: opts.peerIndex,
    });
    let link: LinkState;
    try {
      link = this.createLink({
        name: expanded,
        kind: "veth",
        mtu: opts.mtu,
        mac: opts.mac,
        index: opts.index,
      });
    } catch (e) {
      peerNs.#links.delete(peer.index);
      throw e;
    }
    link.peer = { ns: peerNs, index: peer.index };
    peer.peer = { ns: this, index: link.index };
    return { link, peer };
  }

  /**
   * Removes a link with what hangs on it: its addresses and qdiscs, its
   * bridge ports' membership, mirred targets pointing at it (they show
   * ifindex 0 then), and a veth's peer wherever it is.
   */
  removeLink(link: LinkState): void {
    if (!this.#links.delete(link.index)) return;
    this.#addrs = this.#addrs.filter((a) => a.index !== link.index);
    for (const other of this.#links.values()) {
      if (other.master === link.index) other.master = 0;
      for (const tp of other.ingress.tps) {
        for (const node of tp.nodes) {
          for (const act of node.actions) {
            if (act.ifindex === link.index) act.ifindex = 0;
          }
        }
      }
    }
    const peer = link.peer;
    if (peer) {
      const other = peer.ns.byIndex(peer.index);
      if (other) {
        other.peer = undefined;
        peer.ns.removeLink(other);
      }
    }
  }

  /**
   * Destroys the namespace (its last reference is gone): every device goes,
   * and a veth's peer in another namespace with it.
   */
  destroy(): void {
    if (!this.#alive) return;
    for (const link of this.#sortedLinks().reverse()) this.removeLink(link);
    this.#alive = false;
    this.#world.namespaces.delete(this);
  }

  /**
   * Sets the link up or down. Down drops its IPv6 addresses (the default
   * `keep_addr_on_down=0`); loopback coming up gets 127.0.0.1/8.
   */
  setUp(link: LinkState, up: boolean): void {
    if (((link.flags & If.IFF_UP) !== 0) === up) return;
    if (up) {
      link.flags |= If.IFF_UP;
      if (link.kind === "loopback" && !this.#findAddr(link, LOOPBACK_V4)) {
        this.#addrs.push({
          index: link.index,
          family: 4,
          local: LOOPBACK_V4,
          prefix: LOOPBACK_V4_PREFIX,
          scope: IfAddr.RT_SCOPE_HOST,
          flags: IfAddr.IFA_F_PERMANENT,
          label: link.name,
        });
      }
    } else {
      link.flags &= ~If.IFF_UP;
      link.ipv6Configured = false;
      this.#addrs = this.#addrs.filter((a) =>
        !(a.index === link.index && a.family === 6)
      );
    }
  }

  /** Sets the MAC (EOPNOTSUPP on loopback, EADDRNOTAVAIL for a bad one). */
  setMac(link: LinkState, mac: Uint8Array): void {
    if (link.kind === "loopback") refuse(Errno.EOPNOTSUPP);
    checkEtherAddr(mac);
    link.mac = mac.slice(0, IfEther.ETH_ALEN);
  }

  /** Sets the MTU within the kind's range (EINVAL outside). */
  setMtu(link: LinkState, mtu: number): void {
    checkMtu(link.kind, mtu);
    link.mtu = mtu;
  }

  /** Renames (EEXIST when taken, EINVAL for a bad name). */
  rename(link: LinkState, name: string): void {
    const expanded = this.#expandName(name);
    if (expanded === link.name) return;
    if (this.byName(expanded)) refuse(Errno.EEXIST);
    link.name = expanded;
  }

  /**
   * Enslaves to the bridge at `masterIndex` (0 releases), as do_set_master
   * and br_add_if check it.
   */
  setMaster(link: LinkState, masterIndex: number): void {
    if (link.master === masterIndex) return;
    link.master = 0;
    if (masterIndex === 0) return;
    const master = this.byIndex(masterIndex) ?? refuse(Errno.EINVAL);
    if (master.kind !== "bridge") refuse(Errno.EOPNOTSUPP);
    if (link.kind === "bridge") {
      refuse(Errno.ELOOP, "Can not enslave a bridge to a bridge");
    }
    if (link.kind === "loopback") refuse(Errno.EINVAL);
    link.master = masterIndex;
  }

  // ---------------------------------------------------------- addresses

  #findAddr(link: LinkState, local: Uint8Array): AddrState | undefined {
    return this.#addrs.find((a) =>
      a.index === link.index && sameBytes(a.local, local)
    );
  }

  /**
   * Adds an address as inet_rtm_newaddr / inet6_rtm_newaddr do: EEXIST
   * for one the link has (IPv4: same address and prefix; IPv6: same
   * address); an IPv4 address in the subnet of a primary is secondary.
   */
  addAddr(
    link: LinkState,
    a: {
      local: Uint8Array;
      prefix: number;
      peer?: Uint8Array;
      scope?: number;
      flags?: number;
      label?: string;
      broadcast?: Uint8Array;
    },
    replace = false,
  ): void {
    const family = a.local.length === IPV4_LEN ? 4 : 6;
    const existing = this.#addrs.find((x) =>
      x.index === link.index && x.family === family &&
      sameBytes(x.local, a.local) && (family === 6 || x.prefix === a.prefix)
    );
    if (existing) {
      if (!replace) refuse(Errno.EEXIST);
      existing.flags = (a.flags ?? 0) | IfAddr.IFA_F_PERMANENT |
        (existing.flags & IfAddr.IFA_F_SECONDARY);
      if (a.scope !== undefined) existing.scope = a.scope;
      return;
    }
    let flags = ((a.flags ?? 0) & ~IfAddr.IFA_F_SECONDARY) |
      IfAddr.IFA_F_PERMANENT;
    if (
      family === 4 &&
      this.#addrs.some((x) =>
        x.index === link.index && x.family === 4 &&
        !(x.flags & IfAddr.IFA_F_SECONDARY) && x.prefix === a.prefix &&
        inSubnet(a.local, x.local, x.prefix)
      )
    ) {
      flags |= IfAddr.IFA_F_SECONDARY;
    }
    this.#addrs.push({
      index: link.index,
      family,
      local: a.local.slice(),
      ...(a.peer && !sameBytes(a.peer, a.local)
        ? { peer: a.peer.slice() }
        : {}),
      prefix: a.prefix,
      scope: a.scope ?? IfAddr.RT_SCOPE_UNIVERSE,
      flags,
      ...(family === 4 ? { label: a.label ?? link.name } : {}),
      ...(a.broadcast ? { broadcast: a.broadcast.slice() } : {}),
    });
  }

  /**
   * Deletes the first address matching as the kernel matches it
   * (EADDRNOTAVAIL when none). Deleting an IPv4 primary takes its
   * secondaries (promote_secondaries is off in a new netns).
   */
  delAddr(
    link: LinkState,
    family: 4 | 6,
    m: {
      local?: Uint8Array;
      address?: Uint8Array;
      prefix: number;
      label?: string;
    },
  ): void {
    const found = this.#addrs.find((x) => {
      if (x.index !== link.index || x.family !== family) return false;
      if (family === 6) {
        const want = m.local ?? m.address;
        return want !== undefined && x.prefix === m.prefix &&
          sameBytes(x.local, want);
      }
      if (m.local && !sameBytes(x.local, m.local)) return false;
      if (m.label !== undefined && x.label !== m.label) return false;
      // inet_ifa_match: IFA_ADDRESS falls in the address's subnet.
      return !m.address ||
        (m.prefix === x.prefix &&
          inSubnet(m.address, x.peer ?? x.local, x.prefix));
    }) ?? refuse(Errno.EADDRNOTAVAIL);
    const primary = family === 4 && !(found.flags & IfAddr.IFA_F_SECONDARY);
    this.#addrs = this.#addrs.filter((x) =>
      x !== found &&
      !(primary && x.index === link.index && x.family === 4 &&
        (x.flags & IfAddr.IFA_F_SECONDARY) && x.prefix === found.prefix &&
        inSubnet(x.local, found.local, found.prefix))
    );
  }

  // --------------------------------------------------------- carrier, IPv6

  /** Carrier, as the drivers set it (a TAP has none until a queue is attached). */
  carrier(link: LinkState): boolean {
    switch (link.kind) {
      case "loopback":
      case "dummy":
        return true;
      case "tun":
        return false;
      case "veth": {
        const peer = link.peer && link.peer.ns.byIndex(link.peer.index);
        return isUp(link) && !!peer && isUp(peer);
      }
      case "bridge":
        return [...this.#links.values()].some((p) =>
          p.master === link.index && this.running(p)
        );
    }
  }

  /** IFF_RUNNING: up with carrier. */
  running(link: LinkState): boolean {
    return isUp(link) && this.carrier(link);
  }

  /**
   * addrconf on links that came up with carrier: a link-local address
   * (unless addr_gen_mode is none), ::1 on loopback. Once per up period,
   * as the kernel does it: a flushed link-local stays gone until the link
   * goes down and up again.
   */
  settle(): void {
    for (const link of this.#sortedLinks()) {
      if (link.ipv6Configured || !this.running(link)) continue;
      link.ipv6Configured = true;
      if (link.kind === "loopback") {
        if (!this.#findAddr(link, LOOPBACK_V6)) {
          this.#addrs.push({
            index: link.index,
            family: 6,
            local: LOOPBACK_V6,
            prefix: IPV6_MAX_PREFIX,
            scope: IfAddr.RT_SCOPE_HOST,
            flags: IfAddr.IFA_F_PERMANENT,
          });
        }
        continue;
      }
      if (link.addrGenMode === IfLink.IN6_ADDR_GEN_MODE_NONE) continue;
      const ll = eui64LinkLocal(link.mac);
      if (this.#findAddr(link, ll)) continue;
      this.#addrs.push({
        index: link.index,
        family: 6,
        local: ll,
        prefix: LINK_LOCAL_PREFIX_LEN,
        scope: IfAddr.RT_SCOPE_LINK,
        flags: IfAddr.IFA_F_PERMANENT,
      });
    }
  }

  // --------------------------------------------------------------- views

  /** Every link, as tests see it. */
  linkViews(): FakeLinkView[] {
    return this.#sortedLinks().map((l) => this.linkView(l));
  }

  /** One link as tests see it. */
  linkView(l: LinkState): FakeLinkView {
    const peer = l.peer && l.peer.ns.byIndex(l.peer.index);
    return {
      index: l.index,
      name: l.name,
      kind: l.kind,
      mtu: l.mtu,
      mac: formatMac(l.mac),
      up: isUp(l),
      running: this.running(l),
      ...(l.master ? { master: l.master } : {}),
      txqlen: l.txqlen,
      ...(l.alias ? { alias: l.alias } : {}),
      addrGenMode: l.addrGenMode,
      groMaxSize: l.groMaxSize,
      ...(peer && l.peer
        ? {
          peer: { netns: l.peer.ns.label, index: peer.index, name: peer.name },
        }
        : {}),
      ...(l.tap ? { tap: { ...l.tap } } : {}),
      ingress: l.ingress.kind,
    };
  }

  /** Addresses (of one link, or all), as tests see them. */
  addrViews(link?: LinkState): FakeAddrView[] {
    return this.#addrs
      .filter((a) => !link || a.index === link.index)
      .map((a) => {
        const address = formatIP(a.local);
        return {
          dev: this.byIndex(a.index)?.name ?? "",
          index: a.index,
          family: a.family,
          address,
          prefix: a.prefix,
          cidr: `${address}/${a.prefix}`,
          scope: a.scope,
          flags: a.flags,
        };
      });
  }

  /** The ingress filter nodes of a link, as tests see them. */
  filterViews(link: LinkState): FakeFilterView[] {
    return sortedTps(link.ingress.tps).flatMap((tp) =>
      tp.nodes.map((n) => ({
        prio: tp.prio,
        protocol: tp.protocol,
        handle: n.handle,
        chain: tp.chain,
        matchAll: isMatchAll(n.sel),
        actions: n.actions.map((a) => ({
          index: a.index,
          direction: isIngressAction(a.eaction)
            ? "ingress" as const
            : "egress" as const,
          action: isMirrorAction(a.eaction)
            ? "mirror" as const
            : "redirect" as const,
          ifindex: a.ifindex,
        })),
      }))
    );
  }

  /** Drops the ingress qdisc and its filters (as `tc qdisc del … ingress`). */
  dropIngress(link: LinkState): boolean {
    if (!link.ingress.kind) return false;
    link.ingress.kind = null;
    link.ingress.tps = [];
    return true;
  }

  // -------------------------------------------------------------- serving

  /**
   * Serves one request: names it to the hooks (which log it and may fail
   * it), carries it out, and returns the replies before the ACK. A refusal
   * becomes the KernelError the real socket would throw.
   */
  serve(msg: NetlinkMessage, ctx: RequestContext): Reply[] {
    const dump = isGetType(msg.type) && (msg.flags & Netlink.NLM_F_DUMP) !== 0;
    const { op, object } = this.#describe(msg, dump);
    const call = this.#world.hooks.step(this, op, object, ctx);
    try {
      return this.#dispatch(msg, dump);
    } catch (e) {
      if (e instanceof KernelRefusal) {
        call.errno = e.errno;
        throw e.toKernelError(ctx.op, ctx.object);
      }
      throw e;
    } finally {
      this.#world.settle();
    }
  }

  /** The step and its object, for the log and the failure rules. */
  #describe(
    msg: NetlinkMessage,
    dump: boolean,
  ): { op: FakeKernelOp; object: string } {
    const byIndex = (index: number) => this.byIndex(index)?.name ?? `#${index}`;
    switch (msg.type) {
      case Rtnl.RTM_NEWLINK:
      case Rtnl.RTM_SETLINK:
      case Rtnl.RTM_DELLINK:
      case Rtnl.RTM_GETLINK: {
        if (dump) return { op: "dumplinks", object: "*" };
        const { msg: ifi, rest } = decodeIfInfoMsg(msg.body);
        const object = ifi.index > 0
          ? byIndex(ifi.index)
          : Attrs.parse(rest).str(IfLink.IFLA_IFNAME) ?? "?";
        const op = ({
          [Rtnl.RTM_NEWLINK]: "newlink",
          [Rtnl.RTM_SETLINK]: "setlink",
          [Rtnl.RTM_DELLINK]: "dellink",
          [Rtnl.RTM_GETLINK]: "getlink",
        } as Record<number, FakeKernelOp>)[msg.type];
        return { op, object };
      }
      case Rtnl.RTM_NEWADDR:
      case Rtnl.RTM_DELADDR:
      case Rtnl.RTM_GETADDR:
        if (dump || msg.type === Rtnl.RTM_GETADDR) {
          return { op: "dumpaddrs", object: "*" };
        }
        return {
          op: msg.type === Rtnl.RTM_NEWADDR ? "newaddr" : "deladdr",
          object: byIndex(decodeIfAddrMsg(msg.body).msg.index),
        };
      case Rtnl.RTM_NEWQDISC:
      case Rtnl.RTM_DELQDISC:
      case Rtnl.RTM_GETQDISC:
      case Rtnl.RTM_NEWTFILTER:
      case Rtnl.RTM_DELTFILTER:
      case Rtnl.RTM_GETTFILTER: {
        const object = byIndex(decodeTcMsg(msg.body).msg.ifindex);
        const op = ({
          [Rtnl.RTM_NEWQDISC]: "newqdisc",
          [Rtnl.RTM_DELQDISC]: "delqdisc",
          [Rtnl.RTM_GETQDISC]: "dumpqdiscs",
          [Rtnl.RTM_NEWTFILTER]: "newtfilter",
          [Rtnl.RTM_DELTFILTER]: "deltfilter",
          [Rtnl.RTM_GETTFILTER]: "dumpfilters",
        } as Record<number, FakeKernelOp>)[msg.type];
        return { op, object: op.startsWith("dump") ? "*" : object };
      }
      default:
        return unsupported(`rtnetlink message type ${msg.type}`);
    }
  }

  #dispatch(msg: NetlinkMessage, dump: boolean): Reply[] {
    switch (msg.type) {
      case Rtnl.RTM_GETLINK:
        return dump ? this.#sortedLinks().map((l) => this.#linkMsg(l)) : [
          this.#linkMsg(this.#lookupLink(msg) ?? refuse(Errno.ENODEV)),
        ];
      case Rtnl.RTM_NEWLINK:
        return this.#newLink(msg);
      case Rtnl.RTM_SETLINK: {
        const { msg: ifi, rest } = decodeIfInfoMsg(msg.body);
        const link = this.#lookupLink(msg) ?? refuse(Errno.ENODEV);
        this.#applyLinkAttrs(link, ifi, Attrs.parse(rest), ifi.index > 0);
        return [];
      }
      case Rtnl.RTM_DELLINK: {
        const link = this.#lookupLink(msg) ?? refuse(Errno.ENODEV);
        // Loopback has no rtnl_link_ops, hence no dellink.
        if (link.kind === "loopback") refuse(Errno.EOPNOTSUPP);
        this.removeLink(link);
        return [];
      }
      case Rtnl.RTM_NEWADDR:
        return this.#newAddr(msg);
      case Rtnl.RTM_DELADDR:
        return this.#delAddr(msg);
      case Rtnl.RTM_GETADDR:
        if (!dump) unsupported("RTM_GETADDR without NLM_F_DUMP");
        return this.#dumpAddrs(decodeIfAddrMsg(msg.body).msg.family);
      case Rtnl.RTM_NEWQDISC:
        return this.#newQdisc(msg);
      case Rtnl.RTM_DELQDISC:
        return this.#delQdisc(msg);
      case Rtnl.RTM_GETQDISC:
        if (!dump) unsupported("RTM_GETQDISC without NLM_F_DUMP");
        return this.#sortedLinks().flatMap((l) => this.#qdiscMsgs(l));
      case Rtnl.RTM_NEWTFILTER:
        return this.#newFilter(msg);
      case Rtnl.RTM_DELTFILTER:
        return this.#delFilter(msg);
      case Rtnl.RTM_GETTFILTER:
        if (!dump) unsupported("RTM_GETTFILTER without NLM_F_DUMP");
        return this.#dumpFilters(msg);
      default:
        return unsupported(`rtnetlink message type ${msg.type}`);
    }
  }

  // ------------------------------------------------------------ link msgs

  /**
   * The link a GETLINK/SETLINK/DELLINK names: by ifindex when non-zero,
   * else by IFLA_IFNAME, else EINVAL (rtnl_getlink, rtnl_setlink).
   */
  #lookupLink(msg: NetlinkMessage): LinkState | undefined {
    const { msg: ifi, rest } = decodeIfInfoMsg(msg.body);
    if (ifi.index > 0) return this.byIndex(ifi.index);
    const name = Attrs.parse(rest).str(IfLink.IFLA_IFNAME);
    if (name === undefined) refuse(Errno.EINVAL);
    return this.byName(name);
  }

  #newLink(msg: NetlinkMessage): Reply[] {
    const { msg: ifi, rest } = decodeIfInfoMsg(msg.body);
    const a = Attrs.parse(rest);
    const name = a.str(IfLink.IFLA_IFNAME);
    const existing = ifi.index > 0
      ? this.byIndex(ifi.index)
      : name !== undefined
      ? this.byName(name)
      : undefined;
    const info = a.nested(IfLink.IFLA_LINKINFO);
    const kind = info?.str(IfLink.IFLA_INFO_KIND);
    if (existing) {
      if (msg.flags & Netlink.NLM_F_EXCL) refuse(Errno.EEXIST);
      if (kind !== undefined && kind !== existing.kind) {
        refuse(Errno.EOPNOTSUPP);
      }
      this.#applyLinkAttrs(existing, ifi, a, ifi.index > 0);
      return [];
    }
    if (!(msg.flags & Netlink.NLM_F_CREATE)) refuse(Errno.ENODEV);
    if (kind === "tun") {
      refuse(
        Errno.EOPNOTSUPP,
        "tun/tap creation via rtnetlink is not supported.",
      );
    }
    if (kind !== "veth" && kind !== "bridge" && kind !== "dummy") {
      refuse(Errno.EOPNOTSUPP, "Unknown device type");
    }
    if (a.has(IfLink.IFLA_NET_NS_FD) || a.has(IfLink.IFLA_NET_NS_PID)) {
      unsupported("creating a link in another netns");
    }
    const mac = linkMac(a);
    let link: LinkState;
    if (kind === "veth") {
      const peerInfo = info?.nested(IfLink.IFLA_INFO_DATA)?.get(
        Veth.VETH_INFO_PEER,
      );
      let peerName = `veth${NAME_TEMPLATE}`;
      let peerAttrs: Attrs | undefined;
      let peerIndex: number | undefined;
      if (peerInfo) {
        if (peerInfo.length < IFINFOMSG_LEN) refuse(Errno.EINVAL);
        const peer = decodeIfInfoMsg(peerInfo);
        peerAttrs = Attrs.parse(peer.rest);
        if (peer.msg.index > 0) peerIndex = peer.msg.index;
        peerName = peerAttrs.str(IfLink.IFLA_IFNAME) ?? peerName;
        if (
          peerAttrs.has(IfLink.IFLA_NET_NS_FD) ||
          peerAttrs.has(IfLink.IFLA_NET_NS_PID)
        ) {
          unsupported("a veth peer in another netns by fd or pid");
        }
      }
      // Without peer info the peer is made from the link's own attributes.
      const peerSource = peerInfo ? peerAttrs! : a;
      ({ link } = this.createVeth(name ?? `veth${NAME_TEMPLATE}`, peerName, {
        mtu: a.u32(IfLink.IFLA_MTU),
        peerMtu: peerSource.u32(IfLink.IFLA_MTU),
        mac,
        peerMac: linkMac(peerSource),
        ...(ifi.index > 0 ? { index: ifi.index } : {}),
        ...(peerIndex !== undefined ? { peerIndex } : {}),
      }));
    } else {
      link = this.createLink({
        name: name ?? `${kind}${NAME_TEMPLATE}`,
        kind,
        mtu: a.u32(IfLink.IFLA_MTU),
        mac,
        ...(ifi.index > 0 ? { index: ifi.index } : {}),
      });
    }
    // rtnl_configure_link applies ifi_flags; a refused IFLA_MASTER then
    // unregisters the new link again.
    try {
      if (ifi.flags || ifi.change) this.#changeFlags(link, ifi);
      const master = a.u32(IfLink.IFLA_MASTER);
      if (master !== undefined) this.setMaster(link, master);
    } catch (e) {
      this.removeLink(link);
      throw e;
    }
    const txqlen = a.u32(IfLink.IFLA_TXQLEN);
    if (txqlen !== undefined) link.txqlen = txqlen;
    return [];
  }

  /** do_setlink: validation first, then each change in the kernel's order. */
  #applyLinkAttrs(
    link: LinkState,
    ifi: { flags: number; change: number },
    a: Attrs,
    byIndex: boolean,
  ): void {
    if (a.has(IfLink.IFLA_NET_NS_FD) || a.has(IfLink.IFLA_NET_NS_PID)) {
      unsupported("moving a link to another netns");
    }
    // validate_linkmsg
    const mac = a.get(IfLink.IFLA_ADDRESS);
    if (mac && mac.length < IfEther.ETH_ALEN) refuse(Errno.EINVAL);
    const afSpec = a.nested(IfLink.IFLA_AF_SPEC);
    let addrGenMode: number | undefined;
    for (const [family, payload] of afSpec?.entries() ?? []) {
      if (family !== Socket.AF_INET && family !== Socket.AF_INET6) {
        refuse(Errno.EAFNOSUPPORT);
      }
      if (family !== Socket.AF_INET6) continue;
      const mode = Attrs.parse(payload).u8(IfLink.IFLA_INET6_ADDR_GEN_MODE);
      if (mode !== undefined && mode > IfLink.IN6_ADDR_GEN_MODE_RANDOM) {
        refuse(Errno.EINVAL, "invalid address generation mode");
      }
      if (mode !== undefined) addrGenMode = mode;
    }
    const gro = a.u32(IfLink.IFLA_GRO_MAX_SIZE);
    if (gro !== undefined && gro > GRO_MAX_SIZE) {
      refuse(Errno.ERANGE, "Attribute failed policy validation");
    }
    const alias = a.get(IfLink.IFLA_IFALIAS);
    if (alias && stripNul(alias).length > IFALIASZ - 1) {
      refuse(Errno.ERANGE, "Attribute failed policy validation");
    }
    // do_setlink
    if (mac) this.setMac(link, mac);
    const mtu = a.u32(IfLink.IFLA_MTU);
    if (mtu !== undefined) this.setMtu(link, mtu);
    const name = a.str(IfLink.IFLA_IFNAME);
    if (byIndex && name !== undefined) this.rename(link, name);
    if (alias) link.alias = a.str(IfLink.IFLA_IFALIAS) ?? "";
    if (ifi.flags || ifi.change) this.#changeFlags(link, ifi);
    const master = a.u32(IfLink.IFLA_MASTER);
    if (master !== undefined) this.setMaster(link, master);
    const txqlen = a.u32(IfLink.IFLA_TXQLEN);
    if (txqlen !== undefined) link.txqlen = txqlen;
    if (addrGenMode !== undefined) link.addrGenMode = addrGenMode;
    const gso = a.u32(IfLink.IFLA_GSO_MAX_SIZE);
    if (gso !== undefined) link.gsoMaxSize = gso;
    if (gro !== undefined) link.groMaxSize = gro;
  }

  /**
   * rtnl_dev_combine_flags (ifi_change 0 means every flag is given), then
   * dev_change_flags: NOARP and MULTICAST as given, PROMISC and UP through
   * their own paths, the rest kept.
   */
  #changeFlags(link: LinkState, ifi: { flags: number; change: number }): void {
    const given = ifi.change
      ? (ifi.flags & ifi.change) | (link.flags & ~ifi.change)
      : ifi.flags;
    link.flags = (link.flags & ~(GIVEN_FLAGS | If.IFF_PROMISC)) |
      (given & (GIVEN_FLAGS | If.IFF_PROMISC));
    this.setUp(link, (given & If.IFF_UP) !== 0);
  }

  /** RTM_NEWLINK as rtnl_fill_ifinfo lays it out. */
  #linkMsg(l: LinkState): Reply {
    const running = this.running(l);
    const loopback = l.kind === "loopback";
    const flags = l.flags | (running ? If.IFF_RUNNING | If.IFF_LOWER_UP : 0);
    const operstate = loopback || l.kind === "dummy"
      ? IfLink.IF_OPER_UNKNOWN
      : running
      ? IfLink.IF_OPER_UP
      : IfLink.IF_OPER_DOWN;
    const peer = l.peer && l.peer.ns.byIndex(l.peer.index);
    const master = l.master ? this.byIndex(l.master) : undefined;
    const broadcast = loopback
      ? new Uint8Array(IfEther.ETH_ALEN)
      : new Uint8Array(IfEther.ETH_ALEN).fill(0xff);
    const attrs: Attr[] = [
      nla.str(IfLink.IFLA_IFNAME, l.name),
      nla.u32(IfLink.IFLA_TXQLEN, l.txqlen),
      nla.u8(IfLink.IFLA_OPERSTATE, operstate),
      nla.u8(IfLink.IFLA_LINKMODE, IF_LINK_MODE_DEFAULT),
      nla.u32(IfLink.IFLA_MTU, l.mtu),
      nla.u32(IfLink.IFLA_MIN_MTU, mtuRange(l.kind).min),
      nla.u32(IfLink.IFLA_MAX_MTU, mtuRange(l.kind).max),
      nla.u32(IfLink.IFLA_GROUP, 0),
      nla.u32(IfLink.IFLA_PROMISCUITY, l.flags & If.IFF_PROMISC ? 1 : 0),
      nla.u32(IfLink.IFLA_NUM_TX_QUEUES, l.numTxQueues),
      nla.u32(IfLink.IFLA_GSO_MAX_SEGS, GSO_MAX_SEGS),
      nla.u32(IfLink.IFLA_GSO_MAX_SIZE, l.gsoMaxSize),
      nla.u32(IfLink.IFLA_GRO_MAX_SIZE, l.groMaxSize),
      nla.u32(IfLink.IFLA_NUM_RX_QUEUES, l.numRxQueues),
      nla.u8(IfLink.IFLA_CARRIER, this.carrier(l) ? 1 : 0),
      ...(master ? [nla.u32(IfLink.IFLA_MASTER, master.index)] : []),
      // IFLA_LINK only where iflink differs from the own index: a veth's peer.
      ...(peer ? [nla.u32(IfLink.IFLA_LINK, peer.index)] : []),
      ...(l.alias ? [nla.str(IfLink.IFLA_IFALIAS, l.alias)] : []),
      nla.bytes(IfLink.IFLA_ADDRESS, l.mac),
      nla.bytes(IfLink.IFLA_BROADCAST, broadcast),
      ...(loopback ? [] : [
        nla.nested(IfLink.IFLA_LINKINFO, [
          nla.str(IfLink.IFLA_INFO_KIND, l.kind),
          ...(master?.kind === "bridge"
            ? [nla.str(IfLink.IFLA_INFO_SLAVE_KIND, "bridge")]
            : []),
        ]),
      ]),
      ...(peer && l.peer && l.peer.ns !== this
        ? [nla.i32(IfLink.IFLA_LINK_NETNSID, l.peer.ns.id)]
        : []),
      nla.nested(IfLink.IFLA_AF_SPEC, [
        nla.nested(Socket.AF_INET6, [
          nla.u32(IfLink.IFLA_INET6_FLAGS, l.ipv6Configured ? IF_READY : 0),
          nla.u8(IfLink.IFLA_INET6_ADDR_GEN_MODE, l.addrGenMode),
        ]),
      ]),
    ];
    return {
      type: Rtnl.RTM_NEWLINK,
      header: encodeIfInfoMsg({
        family: Socket.AF_UNSPEC,
        type: loopback ? IfArp.ARPHRD_LOOPBACK : IfArp.ARPHRD_ETHER,
        index: l.index,
        flags,
        change: 0,
      }),
      attrs,
    };
  }

  // ------------------------------------------------------------ addresses

  #newAddr(msg: NetlinkMessage): Reply[] {
    const { msg: ifa, rest } = decodeIfAddrMsg(msg.body);
    const family = afFamily(ifa.family);
    const a = Attrs.parse(rest);
    const link = this.byIndex(ifa.index) ?? refuse(Errno.ENODEV);
    const len = family === 4 ? IPV4_LEN : IPV6_LEN;
    if (ifa.prefixlen > (family === 4 ? IPV4_MAX_PREFIX : IPV6_MAX_PREFIX)) {
      refuse(Errno.EINVAL);
    }
    const addr = ipAttr(a, IfAddr.IFA_ADDRESS, len);
    const local = ipAttr(a, IfAddr.IFA_LOCAL, len);
    // IPv4: IFA_LOCAL is the address, IFA_ADDRESS the peer. IPv6 reads
    // IFA_ADDRESS alone as the address unless IFA_LOCAL differs from it.
    const mine = local ?? addr ?? refuse(Errno.EINVAL);
    const peer = local && addr && !sameBytes(local, addr) ? addr : undefined;
    const flags = a.u32(IfAddr.IFA_FLAGS) ?? ifa.flags;
    const replace = !(msg.flags & Netlink.NLM_F_EXCL) &&
      (msg.flags & Netlink.NLM_F_REPLACE) !== 0;
    this.addAddr(link, {
      local: mine,
      prefix: ifa.prefixlen,
      ...(peer ? { peer } : {}),
      scope: ifa.scope,
      flags,
      ...(family === 4 && a.has(IfAddr.IFA_LABEL)
        ? { label: a.str(IfAddr.IFA_LABEL) }
        : {}),
      ...(family === 4 && a.has(IfAddr.IFA_BROADCAST)
        ? { broadcast: ipAttr(a, IfAddr.IFA_BROADCAST, len) }
        : {}),
    }, replace);
    return [];
  }

  #delAddr(msg: NetlinkMessage): Reply[] {
    const { msg: ifa, rest } = decodeIfAddrMsg(msg.body);
    const family = afFamily(ifa.family);
    const a = Attrs.parse(rest);
    const link = this.byIndex(ifa.index) ?? refuse(Errno.ENODEV);
    const len = family === 4 ? IPV4_LEN : IPV6_LEN;
    const local = ipAttr(a, IfAddr.IFA_LOCAL, len);
    const address = ipAttr(a, IfAddr.IFA_ADDRESS, len);
    if (family === 6 && !local && !address) refuse(Errno.EINVAL);
    this.delAddr(link, family, {
      ...(local ? { local } : {}),
      ...(address ? { address } : {}),
      prefix: ifa.prefixlen,
      ...(a.has(IfAddr.IFA_LABEL) ? { label: a.str(IfAddr.IFA_LABEL) } : {}),
    });
    return [];
  }

  /** The dump: IPv4 before IPv6 (family order), each in device order. */
  #dumpAddrs(af: number): Reply[] {
    const families: (4 | 6)[] = af === Socket.AF_INET
      ? [4]
      : af === Socket.AF_INET6
      ? [6]
      : af === Socket.AF_UNSPEC
      ? [4, 6]
      : [];
    const order = (a: AddrState) => a.index;
    return families.flatMap((f) =>
      this.#addrs.filter((a) => a.family === f)
        .sort((x, y) => order(x) - order(y))
        .map((a) => addrMsg(a))
    );
  }

  // ---------------------------------------------------------------- qdiscs

  #newQdisc(msg: NetlinkMessage): Reply[] {
    const { msg: t, rest } = decodeTcMsg(msg.body);
    const link = this.byIndex(t.ifindex) ?? refuse(Errno.ENODEV);
    const kind = Attrs.parse(rest).str(Rtnl.TCA_KIND);
    if (t.parent !== PktSched.TC_H_INGRESS) {
      unsupported(`qdiscs other than ingress/clsact (parent ${hex(t.parent)})`);
    }
    if (t.handle !== 0 && t.handle !== INGRESS_HANDLE) {
      refuse(Errno.EINVAL, "Invalid handle");
    }
    const slot = link.ingress;
    if (slot.kind) {
      if (msg.flags & Netlink.NLM_F_EXCL) refuse(Errno.EEXIST);
      if (kind !== undefined && kind !== slot.kind) {
        refuse(Errno.EINVAL, "Invalid qdisc name");
      }
      return [];
    }
    if (!(msg.flags & Netlink.NLM_F_CREATE)) refuse(Errno.ENOENT);
    if (kind !== "ingress" && kind !== "clsact") {
      if (kind === undefined) refuse(Errno.EINVAL);
      unsupported(`qdisc kind ${kind}`);
    }
    slot.kind = kind;
    slot.ever = true;
    slot.tps = [];
    return [];
  }

  /**
   * tc_get_qdisc then the delete: never an ingress queue: ENOENT; one that
   * lost its qdisc keeps a handle-0 placeholder: EINVAL on the handle
   * check; a kind that differs: EINVAL.
   */
  #delQdisc(msg: NetlinkMessage): Reply[] {
    const { msg: t, rest } = decodeTcMsg(msg.body);
    const link = this.byIndex(t.ifindex) ?? refuse(Errno.ENODEV);
    const kind = Attrs.parse(rest).str(Rtnl.TCA_KIND);
    if (t.parent === PktSched.TC_H_ROOT) {
      if (kind !== undefined && kind !== this.#rootQdisc(link)) {
        refuse(Errno.EINVAL, "Invalid qdisc name");
      }
      refuse(Errno.ENOENT, "Cannot delete qdisc with handle of zero");
    }
    if (t.parent !== PktSched.TC_H_INGRESS) {
      unsupported(`qdiscs other than ingress/clsact (parent ${hex(t.parent)})`);
    }
    const slot = link.ingress;
    if (!slot.ever) {
      refuse(Errno.ENOENT, "Cannot find specified qdisc on specified device");
    }
    const handle = slot.kind ? INGRESS_HANDLE : 0;
    if (t.handle && t.handle !== handle) refuse(Errno.EINVAL, "Invalid handle");
    if (kind !== undefined && kind !== (slot.kind ?? DOWN_ROOT_QDISC)) {
      refuse(Errno.EINVAL, "Invalid qdisc name");
    }
    if (!slot.kind) {
      refuse(Errno.ENOENT, "Cannot delete qdisc with handle of zero");
    }
    this.dropIngress(link);
    return [];
  }

  #rootQdisc(l: LinkState): string {
    if (!isUp(l)) return DOWN_ROOT_QDISC;
    return l.kind === "tun" ? TAP_ROOT_QDISC : NO_QUEUE_ROOT_QDISC;
  }

  /** A device's root qdisc, then its ingress qdisc when it has one. */
  #qdiscMsgs(l: LinkState): Reply[] {
    const msg = (
      kind: string,
      handle: number,
      parent: number,
      refcnt: number,
      options: boolean,
    ): Reply => ({
      type: Rtnl.RTM_NEWQDISC,
      header: encodeTcMsg({
        family: Socket.AF_UNSPEC,
        ifindex: l.index,
        handle,
        parent,
        info: refcnt,
      }),
      attrs: [
        nla.str(Rtnl.TCA_KIND, kind),
        ...(options ? [nla.nested(Rtnl.TCA_OPTIONS, [])] : []),
        nla.u8(Rtnl.TCA_HW_OFFLOAD, 0),
      ],
    });
    const out = [
      msg(this.#rootQdisc(l), 0, PktSched.TC_H_ROOT, ROOT_QDISC_REFCNT, false),
    ];
    if (l.ingress.kind) {
      out.push(
        msg(
          l.ingress.kind,
          INGRESS_HANDLE,
          PktSched.TC_H_INGRESS,
          INGRESS_QDISC_REFCNT,
          true,
        ),
      );
    }
    return out;
  }

  // --------------------------------------------------------------- filters

  /** The filter block at `parent`: the ingress one, if there is a qdisc. */
  #block(link: LinkState, parent: number): IngressSlot | undefined {
    if (((parent & PktSched.TC_H_MAJ_MASK) >>> 0) !== INGRESS_HANDLE) {
      return undefined;
    }
    if (!link.ingress.kind) return undefined;
    if (
      link.ingress.kind === "clsact" &&
      (parent & PktSched.TC_H_MIN_MASK) === PktSched.TC_H_MIN_EGRESS
    ) {
      unsupported("clsact egress filters");
    }
    return link.ingress;
  }

  /** tc_new_tfilter, then u32_change for a node of the root hash table. */
  #newFilter(msg: NetlinkMessage): Reply[] {
    const { msg: t, rest } = decodeTcMsg(msg.body);
    const a = Attrs.parse(rest);
    const link = this.byIndex(t.ifindex) ?? refuse(Errno.ENODEV);
    const block = this.#block(link, t.parent) ??
      refuse(Errno.EINVAL, "Parent Qdisc doesn't exists");
    const chain = a.u32(Rtnl.TCA_CHAIN) ?? 0;
    let prio = t.info >>> 16;
    const protocol = htons(t.info & 0xffff);
    const kind = a.str(Rtnl.TCA_KIND);
    const create = (msg.flags & Netlink.NLM_F_CREATE) !== 0;
    const auto = prio === 0;
    if (auto) {
      if (!create) {
        refuse(Errno.ENOENT, "Invalid filter command with priority of zero");
      }
      prio = AUTO_PRIO_SEARCH;
    }
    const chainTps = sortedTps(block.tps.filter((tp) => tp.chain === chain));
    let tp = chainTps.find((x) => x.prio === prio);
    if (tp && (auto || (protocol && tp.protocol !== protocol))) {
      refuse(Errno.EINVAL);
    }
    const newTp = !tp;
    if (!tp) {
      if (kind === undefined || !protocol) {
        refuse(Errno.EINVAL, "Filter kind and protocol must be specified");
      }
      if (!create) {
        refuse(
          Errno.ENOENT,
          "Need both RTM_NEWTFILTER and NLM_F_CREATE to create a new filter",
        );
      }
      if (kind !== "u32") refuse(Errno.ENOENT, "TC classifier not found");
      if (auto) {
        const prev = chainTps.filter((x) => x.prio < prio).at(-1);
        prio = prev ? prev.prio - 1 : AUTO_PRIO;
      }
      tp = { chain, prio, protocol, nodes: [] };
    } else if (kind !== undefined && kind !== "u32") {
      refuse(Errno.EINVAL, "Specified filter kind does not match existing one");
    }
    const existing = t.handle
      ? tp.nodes.find((n) => n.handle === t.handle)
      : undefined;
    if (existing && msg.flags & Netlink.NLM_F_EXCL) {
      refuse(Errno.EEXIST, "Filter already exists");
    }
    if (t.handle && !existing && !create) refuse(Errno.ENOENT);
    const node = this.#u32Change(tp, t.handle, a.nested(Rtnl.TCA_OPTIONS));
    if (node) {
      if (existing) tp.nodes[tp.nodes.indexOf(existing)] = node;
      else tp.nodes.push(node);
    }
    if (newTp) block.tps.push(tp);
    return [];
  }

  /** A u32 node from TCA_OPTIONS; null when there are none (the tp alone). */
  #u32Change(
    tp: TcProto,
    handle: number,
    opts: Attrs | undefined,
  ): U32Node | null {
    if (!opts) {
      if (handle) refuse(Errno.EINVAL, "Filter handle requires options");
      return null;
    }
    for (
      const [type, what] of [
        [PktCls.TCA_U32_DIVISOR, "u32 hash tables"],
        [PktCls.TCA_U32_LINK, "u32 links"],
        [PktCls.TCA_U32_CLASSID, "u32 class ids"],
        [PktCls.TCA_U32_POLICE, "u32 policers"],
        [PktCls.TCA_U32_INDEV, "u32 indev"],
        [PktCls.TCA_U32_MARK, "u32 marks"],
      ] as const
    ) {
      if (opts.has(type)) unsupported(what);
    }
    const htid = opts.u32(PktCls.TCA_U32_HASH) ?? U32_ROOT_HT;
    if (htid !== U32_ROOT_HT) unsupported("u32 hash tables other than 800:");
    if (handle) {
      const hHtid = (handle & U32_HTID_MASK) >>> 0;
      if (hHtid && hHtid !== htid) {
        refuse(Errno.EINVAL, "Handle specified hash table address mismatch");
      }
      if (!(handle & U32_NODE_MASK)) {
        refuse(Errno.EINVAL, "Not allowed to change a hash table");
      }
    }
    const sel = opts.get(PktCls.TCA_U32_SEL) ??
      refuse(Errno.EINVAL, "Selector not specified");
    if (sel.length < TcStruct.TC_U32_SEL_LEN) refuse(Errno.EINVAL);
    const nkeys = sel[TcStruct.TC_U32_SEL_NKEYS_OFF];
    if (
      sel.length < TcStruct.TC_U32_SEL_LEN + nkeys * TcStruct.TC_U32_KEY_LEN
    ) {
      refuse(Errno.EINVAL, "Invalid selector size");
    }
    const actions = this.#parseActions(opts.nested(PktCls.TCA_U32_ACT));
    let flags = opts.u32(PktCls.TCA_U32_FLAGS) ?? 0;
    if (!(flags & TCA_CLS_FLAGS_IN_HW)) flags |= TCA_CLS_FLAGS_NOT_IN_HW;
    let id = handle & U32_NODE_MASK;
    if (!id) {
      const used = new Set(tp.nodes.map((n) => n.handle & U32_NODE_MASK));
      id = U32_FIRST_NODE;
      while (used.has(id)) id++;
      if (id > U32_NODE_MASK) refuse(Errno.ENOMEM);
    }
    return {
      handle: (htid | id) >>> 0,
      sel: sel.slice(),
      flags,
      actions,
    };
  }

  /** TCA_U32_ACT: mirred actions in order, as tcf_mirred_init checks them. */
  #parseActions(list: Attrs | undefined): MirredState[] {
    if (!list) return [];
    const ordered = [...list.entries()].sort((x, y) => x[0] - y[0]);
    return ordered.map(([, payload]) => {
      const act = Attrs.parse(payload);
      const kind = act.str(PktCls.TCA_ACT_KIND) ?? refuse(Errno.EINVAL);
      if (kind !== "mirred") {
        refuse(Errno.ENOENT, "Failed to load TC action module");
      }
      const parms = act.nested(PktCls.TCA_ACT_OPTIONS)?.get(
        TcMirred.TCA_MIRRED_PARMS,
      ) ?? refuse(Errno.EINVAL, "Missing required mirred parameters");
      if (parms.length < TcStruct.TC_MIRRED_LEN) refuse(Errno.EINVAL);
      const v = new DataView(parms.buffer, parms.byteOffset, parms.byteLength);
      const eaction = v.getInt32(TcStruct.TC_MIRRED_EACTION_OFF, true);
      if (
        eaction < TcMirred.TCA_EGRESS_REDIR ||
        eaction > TcMirred.TCA_INGRESS_MIRROR
      ) {
        refuse(Errno.EINVAL, "Unknown mirred option");
      }
      const ifindex = v.getUint32(TcStruct.TC_MIRRED_IFINDEX_OFF, true);
      if (!ifindex) refuse(Errno.EINVAL, "Specified device is required");
      if (!this.byIndex(ifindex)) {
        refuse(Errno.ENODEV, "Specified device does not exist");
      }
      const index = v.getUint32(TcStruct.TC_MIRRED_INDEX_OFF, true) ||
        this.#nextAction++;
      return {
        index,
        action: v.getInt32(TcStruct.TC_MIRRED_ACTION_OFF, true),
        eaction,
        ifindex,
      };
    });
  }

  /** tc_del_tfilter: a flush (prio 0), a whole priority, or one node. */
  #delFilter(msg: NetlinkMessage): Reply[] {
    const { msg: t, rest } = decodeTcMsg(msg.body);
    const a = Attrs.parse(rest);
    const link = this.byIndex(t.ifindex) ?? refuse(Errno.ENODEV);
    const block = this.#block(link, t.parent) ??
      refuse(Errno.EINVAL, "Parent Qdisc doesn't exists");
    const chain = a.u32(Rtnl.TCA_CHAIN) ?? 0;
    const prio = t.info >>> 16;
    const protocol = htons(t.info & 0xffff);
    const kind = a.str(Rtnl.TCA_KIND);
    if (prio === 0) {
      if (protocol || t.handle || kind !== undefined) {
        refuse(
          Errno.ENOENT,
          "Cannot flush filters with protocol, handle or kind set",
        );
      }
      block.tps = block.tps.filter((tp) => tp.chain !== chain);
      return [];
    }
    const tp = block.tps.find((x) => x.chain === chain && x.prio === prio) ??
      refuse(Errno.ENOENT, "Filter with specified priority/protocol not found");
    if (protocol && tp.protocol !== protocol) refuse(Errno.EINVAL);
    if (kind !== undefined && kind !== "u32") {
      refuse(Errno.EINVAL, "Specified filter kind does not match existing one");
    }
    if (!t.handle) {
      block.tps = block.tps.filter((x) => x !== tp);
      return [];
    }
    if (t.handle === U32_ROOT_HT) {
      refuse(Errno.EINVAL, "Not allowed to delete root node");
    }
    const node = tp.nodes.find((n) => n.handle === t.handle) ??
      refuse(Errno.ENOENT, "Specified filter handle not found");
    tp.nodes = tp.nodes.filter((n) => n !== node);
    if (!tp.nodes.length) block.tps = block.tps.filter((x) => x !== tp);
    return [];
  }

  /**
   * tc_dump_tfilter: per classifier instance a handle-0 message, then u32's
   * walk: its root hash table (with a divisor), then the nodes. No device or
   * no qdisc at the parent: an empty dump.
   */
  #dumpFilters(msg: NetlinkMessage): Reply[] {
    const { msg: t, rest } = decodeTcMsg(msg.body);
    const link = this.byIndex(t.ifindex);
    if (!link || !t.parent) return [];
    const block = this.#block(link, t.parent);
    if (!block) return [];
    const onlyChain = Attrs.parse(rest).u32(Rtnl.TCA_CHAIN);
    const out: Reply[] = [];
    for (const tp of sortedTps(block.tps)) {
      if (onlyChain !== undefined && tp.chain !== onlyChain) continue;
      const filterMsg = (handle: number, options?: Attr[]): Reply => ({
        type: Rtnl.RTM_NEWTFILTER,
        header: encodeTcMsg({
          family: Socket.AF_UNSPEC,
          ifindex: link.index,
          handle,
          parent: t.parent,
          info: ((tp.prio << 16) | htons(tp.protocol)) >>> 0,
        }),
        attrs: [
          nla.str(Rtnl.TCA_KIND, "u32"),
          nla.u32(Rtnl.TCA_CHAIN, tp.chain),
          ...(options ? [nla.nested(Rtnl.TCA_OPTIONS, options)] : []),
        ],
      });
      out.push(filterMsg(0));
      // The root hash table has divisor 0, dumped as divisor + 1.
      out.push(filterMsg(U32_ROOT_HT, [nla.u32(PktCls.TCA_U32_DIVISOR, 1)]));
      for (const n of [...tp.nodes].sort((x, y) => x.handle - y.handle)) {
        out.push(filterMsg(n.handle, [
          nla.bytes(PktCls.TCA_U32_SEL, n.sel),
          nla.u32(PktCls.TCA_U32_HASH, U32_ROOT_HT),
          nla.u32(PktCls.TCA_U32_FLAGS, n.flags),
          nla.nested(
            PktCls.TCA_U32_ACT,
            n.actions.map((act, i) =>
              nla.nested(TcStruct.TCA_ACT_FIRST_ORDER + i, [
                nla.str(PktCls.TCA_ACT_KIND, "mirred"),
                nla.nested(PktCls.TCA_ACT_OPTIONS, [
                  nla.bytes(TcMirred.TCA_MIRRED_PARMS, mirredParms(act)),
                  nla.bytes(TcMirred.TCA_MIRRED_TM, new Uint8Array(TCF_T_LEN)),
                ]),
              ])
            ),
          ),
        ]));
      }
    }
    return out;
  }
}

/**
 * A NETLINK_ROUTE connection bound to one fake namespace. Each request is
 * encoded as the real socket encodes it and decoded again, so the model
 * reads exactly the bytes the kernel would; replies take the same trip.
 */
export class FakeNetlinkConn implements NetlinkConn {
  readonly #ns: RtnlNamespace;
  readonly #onClose: () => void;
  readonly #port: number;
  #seq = 0;
  #closed = false;

  /** A connection in `ns`; `onClose` runs once, on close. */
  constructor(ns: RtnlNamespace, onClose: () => void = () => {}) {
    this.#ns = ns;
    this.#onClose = onClose;
    this.#port = ns.world.newPort();
  }

  /** The namespace it is bound to. */
  get namespace(): RtnlNamespace {
    return this.#ns;
  }

  /** Sends a request with NLM_F_ACK; the replies before the ACK. */
  request(req: Request, ctx: RequestContext): NetlinkMessage[] {
    return this.#exchange(
      req,
      req.flags | Netlink.NLM_F_REQUEST | Netlink.NLM_F_ACK,
      ctx,
    );
  }

  /** Sends a dump request; every message of the dump. */
  dump(req: Request, ctx: RequestContext): NetlinkMessage[] {
    return this.#exchange(
      req,
      req.flags | Netlink.NLM_F_REQUEST | Netlink.NLM_F_DUMP,
      ctx,
    );
  }

  /** Closes the connection; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#onClose();
  }

  #exchange(
    req: Request,
    flags: number,
    ctx: RequestContext,
  ): NetlinkMessage[] {
    if (this.#closed) throw new Error("netlink socket is closed");
    const seq = ++this.#seq;
    const [msg] = decodeMessages(
      encodeMessage({ type: req.type, flags, seq }, req.header, req.attrs),
    );
    const dump = isGetType(req.type) && (flags & Netlink.NLM_F_DUMP) !== 0;
    return this.#ns.serve(msg, ctx).flatMap((r) =>
      decodeMessages(encodeMessage(
        {
          type: r.type,
          flags: dump ? Netlink.NLM_F_MULTI : 0,
          seq,
          pid: this.#port,
        },
        r.header,
        r.attrs,
      ))
    );
  }
}

// ------------------------------------------------------------------ helpers

function isUp(l: LinkState): boolean {
  return (l.flags & If.IFF_UP) !== 0;
}

/** RTM_GET* types: rtnetlink takes NLM_F_DUMP bits as a dump only there. */
function isGetType(type: number): boolean {
  return type === Rtnl.RTM_GETLINK || type === Rtnl.RTM_GETADDR ||
    type === Rtnl.RTM_GETQDISC || type === Rtnl.RTM_GETTFILTER;
}

function defaultMtu(kind: LinkKind): number {
  return kind === "loopback" ? LOOPBACK_MTU : ETH_DATA_LEN;
}

/** A kind's MTU range; max 0 means no upper bound (loopback, dummy). */
function mtuRange(kind: LinkKind): { min: number; max: number } {
  return kind === "loopback" || kind === "dummy"
    ? { min: 0, max: 0 }
    : { min: ETH_MIN_MTU, max: ETH_MAX_MTU };
}

/** dev_validate_mtu: EINVAL outside [min, max]. */
function checkMtu(kind: LinkKind, mtu: number): void {
  const { min, max } = mtuRange(kind);
  if (mtu < min) refuse(Errno.EINVAL, `mtu less than device minimum`);
  if (max > 0 && mtu > max) {
    refuse(Errno.EINVAL, `mtu greater than device maximum`);
  }
}

/** is_valid_ether_addr: not multicast, not all zero; else EADDRNOTAVAIL. */
function checkEtherAddr(mac: Uint8Array): void {
  if (mac.length < IfEther.ETH_ALEN) refuse(Errno.EINVAL);
  const six = mac.subarray(0, IfEther.ETH_ALEN);
  if ((six[0] & ETHER_MULTICAST_BIT) || six.every((b) => b === 0)) {
    refuse(Errno.EADDRNOTAVAIL);
  }
}

/** IFLA_ADDRESS of a new link, checked. */
function linkMac(a: Attrs): Uint8Array | undefined {
  const mac = a.get(IfLink.IFLA_ADDRESS);
  if (!mac) return undefined;
  if (mac.length < IfEther.ETH_ALEN) refuse(Errno.EINVAL);
  return mac.slice(0, IfEther.ETH_ALEN);
}

function stripNul(b: Uint8Array): Uint8Array {
  return b.length && b[b.length - 1] === 0 ? b.subarray(0, b.length - 1) : b;
}

function afFamily(af: number): 4 | 6 {
  if (af === Socket.AF_INET) return 4;
  if (af === Socket.AF_INET6) return 6;
  // rtnetlink has no NEWADDR/DELADDR handler for other families.
  return refuse(Errno.EOPNOTSUPP);
}

/** An address attribute cut to the family's length (EINVAL when short). */
function ipAttr(a: Attrs, type: number, len: number): Uint8Array | undefined {
  const b = a.get(type);
  if (!b) return undefined;
  if (b.length < len) refuse(Errno.EINVAL);
  return b.slice(0, len);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Whether `addr` is in `net/prefix`. */
function inSubnet(addr: Uint8Array, net: Uint8Array, prefix: number): boolean {
  if (addr.length !== net.length) return false;
  for (let bit = 0; bit < prefix; bit++) {
    const i = bit >> 3;
    const m = 0x80 >> (bit & 7);
    if ((addr[i] & m) !== (net[i] & m)) return false;
  }
  return true;
}

/** fe80::/64 with the modified EUI-64 interface id of `mac`. */
function eui64LinkLocal(mac: Uint8Array): Uint8Array {
  const b = new Uint8Array(IPV6_LEN);
  b.set(LINK_LOCAL_PREFIX);
  const iid = LINK_LOCAL_PREFIX_LEN / 8;
  b.set([mac[0] ^ EUI64_UL_BIT, mac[1], mac[2]], iid);
  b.set(EUI64_FILLER, iid + 3);
  b.set([mac[3], mac[4], mac[5]], iid + 5);
  return b;
}

/** RTM_NEWADDR as inet_fill_ifaddr / inet6_fill_ifaddr lay it out. */
function addrMsg(a: AddrState): Reply {
  const cacheinfo = new Uint8Array(IFA_CACHEINFO_LEN);
  const v = new DataView(cacheinfo.buffer);
  const permanent = (a.flags & IfAddr.IFA_F_PERMANENT) !== 0;
  // ifa_prefered, ifa_valid: forever for a permanent address.
  v.setUint32(0, permanent ? INFINITY_LIFE_TIME : 0, true);
  v.setUint32(4, permanent ? INFINITY_LIFE_TIME : 0, true);
  const attrs: Attr[] = a.family === 4
    ? [
      nla.bytes(IfAddr.IFA_ADDRESS, a.peer ?? a.local),
      nla.bytes(IfAddr.IFA_LOCAL, a.local),
      ...(a.broadcast ? [nla.bytes(IfAddr.IFA_BROADCAST, a.broadcast)] : []),
      ...(a.label !== undefined ? [nla.str(IfAddr.IFA_LABEL, a.label)] : []),
      nla.u32(IfAddr.IFA_FLAGS, a.flags),
      nla.bytes(IfAddr.IFA_CACHEINFO, cacheinfo),
    ]
    : [
      ...(a.peer
        ? [
          nla.bytes(IfAddr.IFA_LOCAL, a.local),
          nla.bytes(IfAddr.IFA_ADDRESS, a.peer),
        ]
        : [nla.bytes(IfAddr.IFA_ADDRESS, a.local)]),
      nla.bytes(IfAddr.IFA_CACHEINFO, cacheinfo),
      nla.u32(IfAddr.IFA_FLAGS, a.flags),
    ];
  return {
    type: Rtnl.RTM_NEWADDR,
    header: encodeIfAddrMsg({
      family: a.family === 4 ? Socket.AF_INET : Socket.AF_INET6,
      prefixlen: a.prefix,
      flags: a.flags & 0xff, // ifa_flags holds the low 8 bits; IFA_FLAGS all
      scope: a.scope,
      index: a.index,
    }),
    attrs,
  };
}

/** struct tc_mirred as tcf_mirred_dump fills it (bound once, to the filter). */
function mirredParms(act: MirredState): Uint8Array {
  const b = new Uint8Array(TcStruct.TC_MIRRED_LEN);
  const v = new DataView(b.buffer);
  v.setUint32(TcStruct.TC_MIRRED_INDEX_OFF, act.index, true);
  v.setInt32(TcStruct.TC_MIRRED_ACTION_OFF, act.action, true);
  v.setInt32(TC_GEN_REFCNT_OFF, 1, true);
  v.setInt32(TC_GEN_BINDCNT_OFF, 1, true);
  v.setInt32(TcStruct.TC_MIRRED_EACTION_OFF, act.eaction, true);
  v.setUint32(TcStruct.TC_MIRRED_IFINDEX_OFF, act.ifindex, true);
  return b;
}

function sortedTps(tps: TcProto[]): TcProto[] {
  return [...tps].sort((a, b) => a.chain - b.chain || a.prio - b.prio);
}

/** A terminal selector whose keys all have mask 0. */
function isMatchAll(sel: Uint8Array): boolean {
  const nkeys = sel[TcStruct.TC_U32_SEL_NKEYS_OFF];
  if (!(sel[TcStruct.TC_U32_SEL_FLAGS_OFF] & PktCls.TC_U32_TERMINAL)) {
    return false;
  }
  if (!nkeys) return false;
  const v = new DataView(sel.buffer, sel.byteOffset, sel.byteLength);
  for (let k = 0; k < nkeys; k++) {
    if (v.getUint32(TcStruct.TC_U32_SEL_LEN + k * TcStruct.TC_U32_KEY_LEN)) {
      return false;
    }
  }
  return true;
}

function isIngressAction(eaction: number): boolean {
  return eaction === TcMirred.TCA_INGRESS_REDIR ||
    eaction === TcMirred.TCA_INGRESS_MIRROR;
}

function isMirrorAction(eaction: number): boolean {
  return eaction === TcMirred.TCA_EGRESS_MIRROR ||
    eaction === TcMirred.TCA_INGRESS_MIRROR;
}

function hex(n: number): string {
  return `0x${(n >>> 0).toString(16)}`;
}
