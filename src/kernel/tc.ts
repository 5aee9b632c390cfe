/**
 * Traffic control over rtnetlink: the ingress qdisc, and u32 match-all
 * filters whose mirred action redirects every frame to another device. That
 * is all vmnic's data path needs (docs/datapath.md): what
 * `tc qdisc add dev X ingress` and
 * `tc filter add dev X parent ffff: protocol all u32 match u32 0 0 action
 * mirred egress redirect dev Y` send, byte for byte, minus the shell.
 *
 * Devices are addressed by ifindex so this module needs no link lookup; an
 * optional `label` (the device name) makes error messages read well.
 *
 * @module
 */
import { type Attr, Attrs, nla } from "../netlink/codec.ts";
import {
  GenStats,
  IfEther,
  Netlink,
  PktCls,
  PktSched,
  Rtnl,
  Socket,
  TcMirred,
  TcTbf,
} from "../netlink/constants.ts";
import { decodeTcMsg, encodeTcMsg, htons } from "../netlink/route.ts";
import type { NetlinkConn } from "../netlink/conn.ts";
import { Errno } from "../sys/errno.ts";
import { InvalidArgumentError, isErrno } from "../sys/errors.ts";

/**
 * Struct sizes and positions of linux/pkt_cls.h and
 * linux/tc_act/tc_mirred.h that constants.ts does not carry (no kernel
 * macro names them; the names follow the structs).
 */
export const TcStruct = {
  /** sizeof(struct tc_u32_key): mask, val, off, offmask. */
  TC_U32_KEY_LEN: 16,
  /** sizeof(struct tc_u32_sel) without its keys[]. */
  TC_U32_SEL_LEN: 16,
  /** sizeof(struct tc_mirred): tc_gen (5 × 32 bit), eaction, ifindex. */
  TC_MIRRED_LEN: 28,
  /** offsetof(struct tc_mirred, index): tc_gen's first field. */
  TC_MIRRED_INDEX_OFF: 0,
  /** offsetof(struct tc_mirred, action): tc_gen's third field. */
  TC_MIRRED_ACTION_OFF: 8,
  /** offsetof(struct tc_mirred, eaction). */
  TC_MIRRED_EACTION_OFF: 20,
  /** offsetof(struct tc_mirred, ifindex). */
  TC_MIRRED_IFINDEX_OFF: 24,
  /** offsetof(struct tc_u32_sel, flags). */
  TC_U32_SEL_FLAGS_OFF: 0,
  /** offsetof(struct tc_u32_sel, nkeys). */
  TC_U32_SEL_NKEYS_OFF: 2,
  /** offsetof(struct tc_u32_key, mask): big-endian, as the packet. */
  TC_U32_KEY_MASK_OFF: 0,
  /** offsetof(struct tc_u32_key, val): big-endian, as the packet. */
  TC_U32_KEY_VAL_OFF: 4,
  /** offsetof(struct tc_u32_key, off): host order, from the network header. */
  TC_U32_KEY_OFF_OFF: 8,
  /** The bytes one u32 key compares. */
  TC_U32_KEY_SPAN: 4,
  /** sizeof(struct gnet_stats_basic): bytes (u64), packets (u32), padded. */
  GNET_STATS_BASIC_LEN: 16,
  /** offsetof(struct gnet_stats_basic, packets). */
  GNET_STATS_BASIC_PACKETS_OFF: 8,
  /** sizeof(struct gnet_stats_queue): qlen, backlog, drops, requeues, overlimits. */
  GNET_STATS_QUEUE_LEN: 20,
  /** offsetof(struct gnet_stats_queue, drops). */
  GNET_STATS_QUEUE_DROPS_OFF: 8,
  /** sizeof(struct tc_ratespec). */
  TC_RATESPEC_LEN: 12,
  /** offsetof(struct tc_ratespec, linklayer). */
  TC_RATESPEC_LINKLAYER_OFF: 1,
  /** offsetof(struct tc_ratespec, rate): bytes per second, 32 bits. */
  TC_RATESPEC_RATE_OFF: 8,
  /** sizeof(struct tc_tbf_qopt): rate, peakrate, limit, buffer, mtu. */
  TC_TBF_QOPT_LEN: 36,
  /** offsetof(struct tc_tbf_qopt, rate). */
  TC_TBF_QOPT_RATE_OFF: 0,
  /** offsetof(struct tc_tbf_qopt, limit): queue bytes. */
  TC_TBF_QOPT_LIMIT_OFF: 24,
  /** offsetof(struct tc_tbf_qopt, buffer): burst time in psched ticks. */
  TC_TBF_QOPT_BUFFER_OFF: 28,
  /** psched ticks are 2^PSCHED_SHIFT ns (net/pkt_sched.h). */
  PSCHED_SHIFT: 6,
  /**
   * Nested action attributes are numbered by their order in the action
   * list, from 1 (the kernel's tcf_action_init loop starts at 1; order 0 is
   * never used).
   */
  TCA_ACT_FIRST_ORDER: 1,
} as const;

/** The ingress qdisc's handle, `ffff:` (TC_H_MAJ of TC_H_INGRESS). */
export const INGRESS_HANDLE: number = (PktSched.TC_H_INGRESS &
  PktSched.TC_H_MAJ_MASK) >>> 0;

/** Filters attached to the ingress qdisc: parent `ffff:`, as `tc` sends it. */
export const INGRESS_PARENT: number = INGRESS_HANDLE;

/** The kind name of the ingress qdisc. */
const INGRESS_KIND = "ingress";
/** The classifier vmnic uses: u32 with a match-all selector. */
const U32_KIND = "u32";
/** The action vmnic uses: mirred (mirror/redirect). */
const MIRRED_KIND = "mirred";

/** The highest filter priority (`tcm_info` keeps it in 16 bits). */
const MAX_PRIO = 0xffff;
/** Default priority of a redirect filter. */
const DEFAULT_PRIO = 1;

/** A qdisc as the kernel reports it. */
export interface QdiscInfo {
  /** Device it sits on. */
  ifindex: number;
  /** Qdisc kind, e.g. `"ingress"`, `"noqueue"`. */
  kind: string;
  /** Its handle (`ffff:` = 0xffff0000 for ingress). */
  handle: number;
  /** Its parent (`TC_H_INGRESS` for ingress, `TC_H_ROOT` for a root qdisc). */
  parent: number;
  /** A tbf qdisc's settings. */
  tbf?: TbfOptions;
  /** Frames it dropped (its queue statistics), when asked for (`stats`). */
  drops?: number;
}

/** A tbf qdisc: a token bucket in front of the device. */
export interface TbfOptions {
  /** Bytes per second. */
  rate: number;
  /** Bucket size in bytes: what may leave at once. */
  burst: number;
  /** Queue size in bytes: what may wait for tokens (the rest is dropped). */
  limit: number;
}

/** A decoded mirred action. */
export interface MirredActionInfo {
  /** Always `"mirred"`. */
  kind: "mirred";
  /** Whether frames are sent out of (egress) or into (ingress) the target. */
  direction: "egress" | "ingress";
  /** Redirect (the frame is taken) or mirror (a copy is sent). */
  action: "redirect" | "mirror";
  /** Device the frames go to. */
  ifindex: number;
  /** The action's own index in the kernel's mirred table. */
  index: number;
  /** Frames it sent on (its basic statistics), when asked for (`stats`). */
  packets?: number;
  /** Bytes it sent on, when asked for (`stats`). */
  bytes?: number;
}

/** An action this module does not decode: only its kind. */
export interface OtherActionInfo {
  /** Action kind, e.g. `"gact"`. */
  kind: string;
}

/** One action of a filter. */
export type ActionInfo = MirredActionInfo | OtherActionInfo;

/** A classifier node that matches traffic (u32 hash tables are left out). */
export interface FilterInfo {
  /** Classifier kind, e.g. `"u32"`. */
  kind: string;
  /** Priority (`pref` in `tc`); lower runs first. */
  prio: number;
  /** Ethernet protocol in host order (`ETH_P_ALL` = 3). */
  protocol: number;
  /** Filter handle (`800::800` = 0x80000800 for a first u32 node). */
  handle: number;
  /** Filter chain (0 unless chains are used). */
  chain: number;
  /** A u32 selector that matches every frame (`match u32 0 0`). */
  matchAll: boolean;
  /** The u32 selector's keys, in order (`[]` for other kinds). */
  keys: U32Key[];
  /** The u32 node ends classification when it matches (TC_U32_TERMINAL). */
  terminal: boolean;
  /** Its actions, in order. */
  actions: ActionInfo[];
}

/**
 * One key of a u32 selector: the 32 bits at `off` (bytes from the network
 * header, a multiple of 4; the Ethernet header is at negative offsets),
 * masked with `mask`, must equal `val`. `mask` and `val` read the packet's
 * bytes big-endian: `0x0a000001` is 10.0.0.1.
 */
export interface U32Key {
  /** Offset from the network header, a multiple of 4. */
  off: number;
  /** Which bits count. */
  mask: number;
  /** What they must be (only bits in `mask`). */
  val: number;
}

/** Options for naming a device in error messages. */
export interface DeviceLabel {
  /** Device name, used in error messages instead of `ifindex N`. */
  label?: string;
}

/** What {@linkcode addRedirectFilter} makes. */
export interface RedirectFilterOptions extends DeviceLabel {
  /** Device whose ingress gets the filter. */
  ifindex: number;
  /** Device every frame is redirected to (sent out of). */
  toIfindex: number;
  /** Name of the target device, for error messages. */
  toLabel?: string;
  /** Filter priority, 1..65535. Default 1. */
  prio?: number;
  /** Filter handle; default 0 lets the kernel choose (`800::800`). */
  handle?: number;
}

/**
 * Adds the ingress qdisc (`handle ffff: parent ingress`).
 *
 * @returns `true` when created; `false` when one existed and
 * `ignoreExisting` was set.
 * @throws {KernelError} `EEXIST` when one exists (without `ignoreExisting`),
 * `ENODEV` for an unknown ifindex.
 */
export function addIngressQdisc(
  sock: NetlinkConn,
  ifindex: number,
  opts: DeviceLabel & { ignoreExisting?: boolean } = {},
): boolean {
  const op = "add ingress qdisc";
  const device = deviceName(op, ifindex, opts.label);
  try {
    sock.request({
      type: Rtnl.RTM_NEWQDISC,
      flags: Netlink.NLM_F_CREATE | Netlink.NLM_F_EXCL,
      header: encodeTcMsg({
        family: Socket.AF_UNSPEC,
        ifindex,
        handle: INGRESS_HANDLE,
        parent: PktSched.TC_H_INGRESS,
      }),
      attrs: [nla.str(Rtnl.TCA_KIND, INGRESS_KIND)],
    }, { op, object: device });
    return true;
  } catch (err) {
    if (
      opts.ignoreExisting && isErrno(err, Errno.EEXIST) &&
      hasIngressQdisc(sock, ifindex)
    ) {
      return false;
    }
    throw err;
  }
}

/**
 * Deletes the ingress qdisc, and with it every filter attached to it. Only
 * an `ingress` qdisc is deleted (a `clsact` in its place is refused with
 * `EINVAL`).
 *
 * @returns `true` when deleted; `false` when there was none and
 * `ignoreMissing` was set (a clsact in its place counts as none and stays).
 * @throws {KernelError} `ENOENT`/`EINVAL` when there is none (without
 * `ignoreMissing`), `ENODEV` for an unknown ifindex.
 */
export function deleteIngressQdisc(
  sock: NetlinkConn,
  ifindex: number,
  opts: DeviceLabel & { ignoreMissing?: boolean } = {},
): boolean {
  const op = "delete ingress qdisc";
  const device = deviceName(op, ifindex, opts.label);
  try {
    sock.request({
      type: Rtnl.RTM_DELQDISC,
      flags: 0,
      header: encodeTcMsg({
        family: Socket.AF_UNSPEC,
        ifindex,
        handle: INGRESS_HANDLE,
        parent: PktSched.TC_H_INGRESS,
      }),
      // With the kind, the kernel refuses to delete a clsact sitting there.
      attrs: [nla.str(Rtnl.TCA_KIND, INGRESS_KIND)],
    }, { op, object: device });
    return true;
  } catch (err) {
    // Never had one: ENOENT. Had one and lost it: the ingress queue keeps a
    // handle-0 placeholder, which the handle check answers with EINVAL.
    if (
      opts.ignoreMissing && isErrno(err, Errno.ENOENT, Errno.EINVAL) &&
      !hasIngressQdisc(sock, ifindex)
    ) {
      return false;
    }
    throw err;
  }
}

/** The qdiscs of the socket's netns, or of one device. */
export function listQdiscs(
  sock: NetlinkConn,
  ifindex?: number,
  opts: { stats?: boolean } = {},
): QdiscInfo[] {
  const object = ifindex === undefined ? "*" : `ifindex ${ifindex}`;
  const out: QdiscInfo[] = [];
  for (
    const m of sock.dump({
      type: Rtnl.RTM_GETQDISC,
      flags: 0,
      header: encodeTcMsg({ family: Socket.AF_UNSPEC, ifindex: ifindex ?? 0 }),
    }, { op: "list qdiscs", object })
  ) {
    if (m.type !== Rtnl.RTM_NEWQDISC) continue;
    const { msg, rest } = decodeTcMsg(m.body);
    // Older kernels dump every device regardless of tcm_ifindex.
    if (ifindex !== undefined && msg.ifindex !== ifindex) continue;
    const attrs = Attrs.parse(rest);
    const kind = attrs.str(Rtnl.TCA_KIND) ?? "";
    const tbf = kind === TBF_KIND
      ? decodeTbf(attrs.nested(Rtnl.TCA_OPTIONS))
      : undefined;
    const drops = opts.stats
      ? decodeQueueDrops(attrs.nested(Rtnl.TCA_STATS2))
      : undefined;
    out.push({
      ifindex: msg.ifindex,
      kind,
      handle: msg.handle,
      parent: msg.parent,
      ...(tbf ? { tbf } : {}),
      ...(drops !== undefined ? { drops } : {}),
    });
  }
  return out;
}

/**
 * Makes a tbf qdisc the device's root qdisc (`tc qdisc replace dev X root
 * tbf rate R burst B limit L`): frames leaving the device wait for tokens,
 * `rate` bytes a second, at most `burst` at once, at most `limit` queued.
 * An existing root tbf is changed in place.
 *
 * @throws {InvalidArgumentError} for a rate, burst or limit out of range.
 * @throws {KernelError} naming "set rate limit".
 */
export function setRootTbf(
  sock: NetlinkConn,
  ifindex: number,
  opts: TbfOptions & DeviceLabel,
): void {
  const op = "set rate limit";
  const device = deviceName(op, ifindex, opts.label);
  checkTbf(op, device, opts);
  sock.request({
    type: Rtnl.RTM_NEWQDISC,
    flags: Netlink.NLM_F_CREATE | Netlink.NLM_F_REPLACE,
    header: encodeTcMsg({
      family: Socket.AF_UNSPEC,
      ifindex,
      handle: 0,
      parent: PktSched.TC_H_ROOT,
    }),
    attrs: [
      nla.str(Rtnl.TCA_KIND, TBF_KIND),
      nla.nested(Rtnl.TCA_OPTIONS, encodeTbfOptions(opts)),
    ],
  }, { op, object: device });
}

/**
 * Deletes the device's root qdisc, giving it back its default one.
 *
 * @returns `true` when deleted; `false` when the root was the default (or
 * the device has none) and `ignoreMissing` was set.
 * @throws {KernelError} `ENOENT` for a default root (without
 * `ignoreMissing`), `ENODEV` for an unknown ifindex.
 */
export function deleteRootQdisc(
  sock: NetlinkConn,
  ifindex: number,
  opts: DeviceLabel & { ignoreMissing?: boolean } = {},
): boolean {
  const op = "delete root qdisc";
  const device = deviceName(op, ifindex, opts.label);
  try {
    sock.request({
      type: Rtnl.RTM_DELQDISC,
      flags: 0,
      header: encodeTcMsg({
        family: Socket.AF_UNSPEC,
        ifindex,
        handle: 0,
        parent: PktSched.TC_H_ROOT,
      }),
    }, { op, object: device });
    return true;
  } catch (err) {
    // A default root qdisc has handle 0: "Cannot delete qdisc with handle
    // of zero" (ENOENT); a device without any (noqueue) says EINVAL.
    if (opts.ignoreMissing && isErrno(err, Errno.ENOENT, Errno.EINVAL)) {
      return false;
    }
    throw err;
  }
}

/** The tbf kind name. */
const TBF_KIND = "tbf";

/** The largest 32-bit value (tc_ratespec.rate, the limit, the burst). */
const U32_MAX = 0xffffffff;

function checkTbf(op: string, object: string, t: TbfOptions): void {
  const bad = (what: string, v: number, range: string) => {
    throw new InvalidArgumentError(op, object, `bad ${what} ${v} (${range})`);
  };
  if (!Number.isSafeInteger(t.rate) || t.rate < 1) {
    bad("rate", t.rate, "bytes per second, at least 1");
  }
  if (!Number.isInteger(t.burst) || t.burst < 1 || t.burst > U32_MAX) {
    bad("burst", t.burst, "bytes, 1..2^32-1");
  }
  if (!Number.isInteger(t.limit) || t.limit < 1 || t.limit > U32_MAX) {
    bad("limit", t.limit, "bytes, 1..2^32-1");
  }
}

/**
 * TCA_OPTIONS of a tbf qdisc: struct tc_tbf_qopt (rate as far as 32 bits
 * reach, an Ethernet link layer so no rate table is needed, the queue
 * limit, the burst as a time), the full rate in TCA_TBF_RATE64 when it
 * needs more bits, and the burst in bytes (TCA_TBF_BURST), which the kernel
 * takes over the time.
 */
export function encodeTbfOptions(t: TbfOptions): Attr[] {
  const qopt = new Uint8Array(TcStruct.TC_TBF_QOPT_LEN);
  const v = new DataView(qopt.buffer);
  const rate = TcStruct.TC_TBF_QOPT_RATE_OFF;
  v.setUint8(
    rate + TcStruct.TC_RATESPEC_LINKLAYER_OFF,
    TcTbf.TC_LINKLAYER_ETHERNET,
  );
  v.setUint32(
    rate + TcStruct.TC_RATESPEC_RATE_OFF,
    Math.min(t.rate, U32_MAX),
    true,
  );
  v.setUint32(TcStruct.TC_TBF_QOPT_LIMIT_OFF, t.limit, true);
  const ticks = Math.min(
    Math.ceil((t.burst * NS_PER_S / t.rate) / 2 ** TcStruct.PSCHED_SHIFT),
    U32_MAX,
  );
  v.setUint32(TcStruct.TC_TBF_QOPT_BUFFER_OFF, ticks, true);
  const attrs: Attr[] = [nla.bytes(TcTbf.TCA_TBF_PARMS, qopt)];
  if (t.rate > U32_MAX) {
    const r64 = new Uint8Array(8);
    new DataView(r64.buffer).setBigUint64(0, BigInt(t.rate), true);
    attrs.push(nla.bytes(TcTbf.TCA_TBF_RATE64, r64));
  }
  attrs.push(nla.u32(TcTbf.TCA_TBF_BURST, t.burst));
  return attrs;
}

/** Nanoseconds in a second. */
const NS_PER_S = 1e9;

/** A tbf qdisc's settings from its dumped TCA_OPTIONS. */
function decodeTbf(opts: Attrs | undefined): TbfOptions | undefined {
  const parms = opts?.get(TcTbf.TCA_TBF_PARMS);
  if (!parms || parms.length < TcStruct.TC_TBF_QOPT_LEN) return undefined;
  const v = new DataView(parms.buffer, parms.byteOffset, parms.byteLength);
  let rate = v.getUint32(
    TcStruct.TC_TBF_QOPT_RATE_OFF + TcStruct.TC_RATESPEC_RATE_OFF,
    true,
  );
  const r64 = opts!.get(TcTbf.TCA_TBF_RATE64);
  if (r64 && r64.length >= 8) {
    rate = Number(
      new DataView(r64.buffer, r64.byteOffset, r64.byteLength)
        .getBigUint64(0, true),
    );
  }
  const ticks = v.getUint32(TcStruct.TC_TBF_QOPT_BUFFER_OFF, true);
  return {
    rate,
    burst: Math.round(ticks * 2 ** TcStruct.PSCHED_SHIFT * rate / NS_PER_S),
    limit: v.getUint32(TcStruct.TC_TBF_QOPT_LIMIT_OFF, true),
  };
}

/** gnet_stats_queue.drops from a dumped TCA_STATS2, when present. */
function decodeQueueDrops(stats: Attrs | undefined): number | undefined {
  const q = stats?.get(GenStats.TCA_STATS_QUEUE);
  // struct gnet_stats_queue: qlen, backlog, drops, requeues, overlimits.
  if (!q || q.length < TcStruct.GNET_STATS_QUEUE_LEN) return undefined;
  return new DataView(q.buffer, q.byteOffset, q.byteLength).getUint32(
    TcStruct.GNET_STATS_QUEUE_DROPS_OFF,
    true,
  );
}

/**
 * Adds a u32 match-all filter on the ingress of `ifindex` whose mirred
 * action redirects every frame out of `toIfindex` (and steals it from the
 * receiving stack). The ingress qdisc must exist.
 *
 * @throws {InvalidArgumentError} for a bad ifindex, prio or handle.
 * @throws {KernelError} naming "add redirect filter" and `from -> to`.
 */
export function addRedirectFilter(
  sock: NetlinkConn,
  opts: RedirectFilterOptions,
): void {
  addU32Filter(sock, {
    ifindex: opts.ifindex,
    label: opts.label,
    prio: opts.prio ?? DEFAULT_PRIO,
    handle: opts.handle,
    protocol: IfEther.ETH_P_ALL,
    keys: [MATCH_ALL_KEY],
    redirectTo: { ifindex: opts.toIfindex, label: opts.toLabel },
  }, "add redirect filter");
}

/** `match u32 0 0 at 0`: the key that matches every frame. */
export const MATCH_ALL_KEY: U32Key = Object.freeze({ off: 0, mask: 0, val: 0 });

/** What {@linkcode addU32Filter} makes. */
export interface U32FilterOptions extends DeviceLabel {
  /** Device whose ingress gets the filter. */
  ifindex: number;
  /** Filter priority, 1..65535: lower runs first; one filter per priority. */
  prio: number;
  /** Ethernet protocol it sees (`ETH_P_ALL`, `ETH_P_IP`, …), host order. */
  protocol: number;
  /** The selector's keys, all of which must match; at least one. */
  keys: readonly U32Key[];
  /**
   * Where a matching frame is redirected (sent out of, and stolen from the
   * receiving stack). None: a match ends classification and the frame goes
   * on into the device's own stack, as a frame no filter took.
   */
  redirectTo?: { ifindex: number; label?: string };
  /** Filter handle; default 0 lets the kernel choose (`800::800`). */
  handle?: number;
}

/**
 * Adds a terminal u32 filter on the ingress of a device: frames of
 * `protocol` whose bits match every key are redirected (`redirectTo`) or,
 * without one, handed on to the device's stack with classification ended.
 * The ingress qdisc must exist.
 *
 * @throws {InvalidArgumentError} for a bad ifindex, prio, handle or key.
 * @throws {KernelError} naming `op` (default "add filter") and the device.
 */
export function addU32Filter(
  sock: NetlinkConn,
  opts: U32FilterOptions,
  op = "add filter",
): void {
  const from = deviceName(op, opts.ifindex, opts.label);
  const object = opts.redirectTo
    ? `${from} -> ${
      deviceName(op, opts.redirectTo.ifindex, opts.redirectTo.label)
    }`
    : from;
  checkPrio(op, object, opts.prio);
  const handle = opts.handle ?? 0;
  if (!Number.isInteger(handle) || handle < 0 || handle > U32_MAX) {
    throw new InvalidArgumentError(op, object, `bad handle ${handle}`);
  }
  const sel = encodeU32Selector(op, object, opts.keys);
  const actions = opts.redirectTo
    ? [
      nla.nested(PktCls.TCA_U32_ACT, [
        nla.nested(TcStruct.TCA_ACT_FIRST_ORDER, [
          nla.str(PktCls.TCA_ACT_KIND, MIRRED_KIND),
          nla.nested(PktCls.TCA_ACT_OPTIONS, [
            nla.bytes(
              TcMirred.TCA_MIRRED_PARMS,
              encodeTcMirred(
                TcMirred.TCA_EGRESS_REDIR,
                opts.redirectTo.ifindex,
              ),
            ),
          ]),
        ]),
      ]),
    ]
    : [];
  sock.request({
    type: Rtnl.RTM_NEWTFILTER,
    flags: Netlink.NLM_F_CREATE | Netlink.NLM_F_EXCL,
    header: encodeTcMsg({
      family: Socket.AF_UNSPEC,
      ifindex: opts.ifindex,
      handle,
      parent: INGRESS_PARENT,
      info: filterInfo(opts.prio, opts.protocol),
    }),
    attrs: [
      nla.str(Rtnl.TCA_KIND, U32_KIND),
      // Same order as iproute2: the action list, then the selector.
      nla.nested(Rtnl.TCA_OPTIONS, [
        ...actions,
        nla.bytes(PktCls.TCA_U32_SEL, sel),
      ]),
    ],
  }, { op, object });
}

/** The most keys one u32 selector may have (its nkeys is a byte). */
export const MAX_U32_KEYS = 128;

/**
 * A terminal struct tc_u32_sel with `keys`. Each key's `val` must lie
 * within its `mask` and its offset be a multiple of 4.
 */
export function encodeU32Selector(
  op: string,
  object: string,
  keys: readonly U32Key[],
): Uint8Array {
  if (!keys.length || keys.length > MAX_U32_KEYS) {
    throw new InvalidArgumentError(
      op,
      object,
      `a u32 selector has 1..${MAX_U32_KEYS} keys, not ${keys.length}`,
    );
  }
  const b = new Uint8Array(
    TcStruct.TC_U32_SEL_LEN + keys.length * TcStruct.TC_U32_KEY_LEN,
  );
  const v = new DataView(b.buffer);
  // flags, offshift, nkeys; offmask/off/offoff/hoff/hmask stay 0.
  b[TcStruct.TC_U32_SEL_FLAGS_OFF] = PktCls.TC_U32_TERMINAL;
  b[TcStruct.TC_U32_SEL_NKEYS_OFF] = keys.length;
  for (const [i, k] of keys.entries()) {
    if (
      !Number.isInteger(k.off) || k.off % TcStruct.TC_U32_KEY_SPAN !== 0 ||
      ((k.val & ~k.mask) >>> 0) !== 0
    ) {
      throw new InvalidArgumentError(
        op,
        object,
        `bad u32 key ${
          JSON.stringify(k)
        } (offset a multiple of 4, value within the mask)`,
      );
    }
    const at = TcStruct.TC_U32_SEL_LEN + i * TcStruct.TC_U32_KEY_LEN;
    v.setUint32(at + TcStruct.TC_U32_KEY_MASK_OFF, k.mask >>> 0, false);
    v.setUint32(at + TcStruct.TC_U32_KEY_VAL_OFF, k.val >>> 0, false);
    v.setInt32(at + TcStruct.TC_U32_KEY_OFF_OFF, k.off, true);
  }
  return b;
}

/**
 * The keys that match `bytes` at `off` (from the network header; any
 * alignment), under `mask` (default: every bit), as aligned u32 keys.
 * Keys at the same offset must be merged ({@linkcode mergeU32Keys}).
 */
export function u32Match(
  off: number,
  bytes: Uint8Array,
  mask?: Uint8Array,
): U32Key[] {
  const span = TcStruct.TC_U32_KEY_SPAN;
  const byKey = new Map<number, { mask: number; val: number }>();
  for (let i = 0; i < bytes.length; i++) {
    const m = mask ? mask[i] : 0xff;
    if (!m) continue;
    const at = off + i;
    const base = Math.floor(at / span) * span;
    const shift = (span - 1 - (at - base)) * 8;
    const k = byKey.get(base) ?? { mask: 0, val: 0 };
    k.mask = (k.mask | (m << shift)) >>> 0;
    k.val = (k.val | ((bytes[i] & m) << shift)) >>> 0;
    byKey.set(base, k);
  }
  return [...byKey.entries()].sort((a, b) => a[0] - b[0]).map((
    [off, k],
  ) => ({ off, ...k }));
}

/**
 * One key per offset: keys at the same offset joined (both must hold).
 * Null when two of them want different values of the same bits (nothing
 * could match).
 */
export function mergeU32Keys(keys: readonly U32Key[]): U32Key[] | null {
  const byOff = new Map<number, U32Key>();
  for (const k of keys) {
    const have = byOff.get(k.off);
    if (!have) {
      byOff.set(k.off, { ...k });
      continue;
    }
    const common = (have.mask & k.mask) >>> 0;
    if (((have.val & common) >>> 0) !== ((k.val & common) >>> 0)) return null;
    have.mask = (have.mask | k.mask) >>> 0;
    have.val = (have.val | k.val) >>> 0;
  }
  return [...byOff.values()].sort((a, b) => a.off - b.off);
}

/**
 * The filters on `parent` (default: the ingress qdisc) of a device that
 * match traffic, with their actions decoded. No qdisc there: `[]`.
 */
export function listFilters(
  sock: NetlinkConn,
  ifindex: number,
  parent: number = INGRESS_PARENT,
  opts: DeviceLabel & { stats?: boolean } = {},
): FilterInfo[] {
  const op = "list filters";
  const device = deviceName(op, ifindex, opts.label);
  const out: FilterInfo[] = [];
  for (
    const m of sock.dump({
      type: Rtnl.RTM_GETTFILTER,
      flags: 0,
      header: encodeTcMsg({ family: Socket.AF_UNSPEC, ifindex, parent }),
    }, { op, object: device })
  ) {
    if (m.type !== Rtnl.RTM_NEWTFILTER) continue;
    const { msg, rest } = decodeTcMsg(m.body);
    // Handle 0 is the classifier instance itself, not a node matching traffic.
    if (msg.ifindex !== ifindex || msg.handle === 0) continue;
    const attrs = Attrs.parse(rest);
    const kind = attrs.str(Rtnl.TCA_KIND) ?? "";
    const options = attrs.nested(Rtnl.TCA_OPTIONS);
    // A u32 hash table (it has a divisor) matches nothing by itself.
    if (kind === U32_KIND && options?.has(PktCls.TCA_U32_DIVISOR)) continue;
    out.push({
      kind,
      prio: msg.info >>> 16,
      protocol: htons(msg.info & 0xffff),
      handle: msg.handle,
      chain: attrs.u32(Rtnl.TCA_CHAIN) ?? 0,
      matchAll: kind === U32_KIND &&
        isMatchAllSelector(options?.get(PktCls.TCA_U32_SEL)),
      keys: kind === U32_KIND
        ? decodeU32Keys(options?.get(PktCls.TCA_U32_SEL))
        : [],
      terminal: kind === U32_KIND &&
        isTerminal(options?.get(PktCls.TCA_U32_SEL)),
      actions: kind === U32_KIND && options
        ? decodeActions(options.nested(PktCls.TCA_U32_ACT), opts.stats)
        : [],
    });
  }
  return out;
}

/**
 * Deletes the ingress filters of a device: those of one priority, or all of
 * them. Deleting a priority that has none fails with `ENOENT`.
 */
export function deleteFilters(
  sock: NetlinkConn,
  ifindex: number,
  opts: DeviceLabel & { prio?: number } = {},
): void {
  const op = "delete filters";
  const device = deviceName(op, ifindex, opts.label);
  // prio 0 and protocol 0 ask the kernel to flush the whole chain.
  if (opts.prio !== undefined) checkPrio(op, device, opts.prio);
  sock.request({
    type: Rtnl.RTM_DELTFILTER,
    flags: 0,
    header: encodeTcMsg({
      family: Socket.AF_UNSPEC,
      ifindex,
      parent: INGRESS_PARENT,
      info: filterInfo(opts.prio ?? 0, 0),
    }),
  }, { op, object: device });
}

/** tcm_info of a filter: priority in the high half, protocol big-endian. */
function filterInfo(prio: number, protocol: number): number {
  return ((prio << 16) | htons(protocol)) >>> 0;
}

/** struct tc_mirred for an action that steals the frame after sending it. */
function encodeTcMirred(eaction: number, ifindex: number): Uint8Array {
  const b = new Uint8Array(TcStruct.TC_MIRRED_LEN);
  const v = new DataView(b.buffer);
  // tc_gen: index 0 (kernel picks), capab 0, action, refcnt 0, bindcnt 0.
  v.setInt32(TcStruct.TC_MIRRED_ACTION_OFF, PktCls.TC_ACT_STOLEN, true);
  v.setInt32(TcStruct.TC_MIRRED_EACTION_OFF, eaction, true);
  v.setUint32(TcStruct.TC_MIRRED_IFINDEX_OFF, ifindex, true);
  return b;
}

/** The keys of a dumped struct tc_u32_sel. */
function decodeU32Keys(sel: Uint8Array | undefined): U32Key[] {
  if (!sel || sel.length < TcStruct.TC_U32_SEL_LEN) return [];
  const nkeys = sel[TcStruct.TC_U32_SEL_NKEYS_OFF];
  const v = new DataView(sel.buffer, sel.byteOffset, sel.byteLength);
  const keys: U32Key[] = [];
  for (let k = 0; k < nkeys; k++) {
    const at = TcStruct.TC_U32_SEL_LEN + k * TcStruct.TC_U32_KEY_LEN;
    if (at + TcStruct.TC_U32_KEY_LEN > sel.length) break;
    keys.push({
      off: v.getInt32(at + TcStruct.TC_U32_KEY_OFF_OFF, true),
      mask: v.getUint32(at + TcStruct.TC_U32_KEY_MASK_OFF, false),
      val: v.getUint32(at + TcStruct.TC_U32_KEY_VAL_OFF, false),
    });
  }
  return keys;
}

function isTerminal(sel: Uint8Array | undefined): boolean {
  return !!sel && sel.length >= TcStruct.TC_U32_SEL_LEN &&
    (sel[TcStruct.TC_U32_SEL_FLAGS_OFF] & PktCls.TC_U32_TERMINAL) !== 0;
}

/** A terminal tc_u32_sel whose keys all have mask 0 (so match anything). */
function isMatchAllSelector(sel: Uint8Array | undefined): boolean {
  if (!sel || sel.length < TcStruct.TC_U32_SEL_LEN) return false;
  const nkeys = sel[TcStruct.TC_U32_SEL_NKEYS_OFF];
  if (
    !(sel[TcStruct.TC_U32_SEL_FLAGS_OFF] & PktCls.TC_U32_TERMINAL) ||
    nkeys === 0
  ) {
    return false;
  }
  if (sel.length < TcStruct.TC_U32_SEL_LEN + nkeys * TcStruct.TC_U32_KEY_LEN) {
    return false;
  }
  const v = new DataView(sel.buffer, sel.byteOffset, sel.byteLength);
  for (let k = 0; k < nkeys; k++) {
    // tc_u32_key.mask is the key's first field.
    const keyStart = TcStruct.TC_U32_SEL_LEN + k * TcStruct.TC_U32_KEY_LEN;
    if (v.getUint32(keyStart, false) !== 0) return false;
  }
  return true;
}

/** The actions of a TCA_*_ACT list (nested by order 1..n). */
function decodeActions(
  list: Attrs | undefined,
  stats = false,
): ActionInfo[] {
  if (!list) return [];
  const ordered = [...list.entries()].sort((a, b) => a[0] - b[0]);
  return ordered.map(([, payload]) => {
    const act = Attrs.parse(payload);
    const kind = act.str(PktCls.TCA_ACT_KIND) ?? "";
    const parms = act.nested(PktCls.TCA_ACT_OPTIONS)?.get(
      TcMirred.TCA_MIRRED_PARMS,
    );
    if (
      kind !== MIRRED_KIND || !parms || parms.length < TcStruct.TC_MIRRED_LEN
    ) {
      return { kind };
    }
    const v = new DataView(parms.buffer, parms.byteOffset, parms.byteLength);
    const eaction = v.getInt32(TcStruct.TC_MIRRED_EACTION_OFF, true);
    return {
      kind: MIRRED_KIND,
      direction: eaction === TcMirred.TCA_INGRESS_REDIR ||
          eaction === TcMirred.TCA_INGRESS_MIRROR
        ? "ingress"
        : "egress",
      action: eaction === TcMirred.TCA_EGRESS_MIRROR ||
          eaction === TcMirred.TCA_INGRESS_MIRROR
        ? "mirror"
        : "redirect",
      ifindex: v.getUint32(TcStruct.TC_MIRRED_IFINDEX_OFF, true),
      index: v.getUint32(TcStruct.TC_MIRRED_INDEX_OFF, true),
      ...(stats ? decodeBasicStats(act.nested(PktCls.TCA_ACT_STATS)) : {}),
    } satisfies MirredActionInfo;
  });
}

/** Packets and bytes of a dumped TCA_ACT_STATS (gnet_stats_basic). */
function decodeBasicStats(
  stats: Attrs | undefined,
): { packets?: number; bytes?: number } {
  const basic = stats?.get(GenStats.TCA_STATS_BASIC);
  if (!basic || basic.length < TcStruct.GNET_STATS_BASIC_LEN) return {};
  const v = new DataView(basic.buffer, basic.byteOffset, basic.byteLength);
  const pkt64 = stats!.get(GenStats.TCA_STATS_PKT64);
  const packets = pkt64 && pkt64.length >= 8
    ? Number(
      new DataView(pkt64.buffer, pkt64.byteOffset, pkt64.byteLength)
        .getBigUint64(0, true),
    )
    : v.getUint32(TcStruct.GNET_STATS_BASIC_PACKETS_OFF, true);
  return { packets, bytes: Number(v.getBigUint64(0, true)) };
}

function hasIngressQdisc(sock: NetlinkConn, ifindex: number): boolean {
  return listQdiscs(sock, ifindex).some((q) =>
    q.kind === INGRESS_KIND && q.parent === PktSched.TC_H_INGRESS
  );
}

function deviceName(op: string, ifindex: number, label?: string): string {
  const name = label ?? `ifindex ${ifindex}`;
  if (!Number.isInteger(ifindex) || ifindex <= 0 || ifindex > 0x7fffffff) {
    throw new InvalidArgumentError(op, name, `bad ifindex ${ifindex}`);
  }
  return name;
}

function checkPrio(op: string, object: string, prio: number): void {
  if (!Number.isInteger(prio) || prio < 1 || prio > MAX_PRIO) {
    throw new InvalidArgumentError(op, object, `bad prio ${prio} (1..65535)`);
  }
}
