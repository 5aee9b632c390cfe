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
import { Attrs, nla } from "../netlink/codec.ts";
import {
  IfEther,
  Netlink,
  PktCls,
  PktSched,
  Rtnl,
  Socket,
  TcMirred,
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
  /** Its actions, in order. */
  actions: ActionInfo[];
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
    out.push({
      ifindex: msg.ifindex,
      kind: Attrs.parse(rest).str(Rtnl.TCA_KIND) ?? "",
      handle: msg.handle,
      parent: msg.parent,
    });
  }
  return out;
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
  const op = "add redirect filter";
  const from = deviceName(op, opts.ifindex, opts.label);
  const to = deviceName(op, opts.toIfindex, opts.toLabel);
  const object = `${from} -> ${to}`;
  const prio = opts.prio ?? DEFAULT_PRIO;
  checkPrio(op, object, prio);
  const handle = opts.handle ?? 0;
  if (!Number.isInteger(handle) || handle < 0 || handle > 0xffffffff) {
    throw new InvalidArgumentError(op, object, `bad handle ${handle}`);
  }
  sock.request({
    type: Rtnl.RTM_NEWTFILTER,
    flags: Netlink.NLM_F_CREATE | Netlink.NLM_F_EXCL,
    header: encodeTcMsg({
      family: Socket.AF_UNSPEC,
      ifindex: opts.ifindex,
      handle,
      parent: INGRESS_PARENT,
      info: filterInfo(prio, IfEther.ETH_P_ALL),
    }),
    attrs: [
      nla.str(Rtnl.TCA_KIND, U32_KIND),
      // Same order as iproute2: the action list, then the selector.
      nla.nested(Rtnl.TCA_OPTIONS, [
        nla.nested(PktCls.TCA_U32_ACT, [
          nla.nested(TcStruct.TCA_ACT_FIRST_ORDER, [
            nla.str(PktCls.TCA_ACT_KIND, MIRRED_KIND),
            nla.nested(PktCls.TCA_ACT_OPTIONS, [
              nla.bytes(
                TcMirred.TCA_MIRRED_PARMS,
                encodeTcMirred(TcMirred.TCA_EGRESS_REDIR, opts.toIfindex),
              ),
            ]),
          ]),
        ]),
        nla.bytes(PktCls.TCA_U32_SEL, encodeMatchAllSelector()),
      ]),
    ],
  }, { op, object });
}

/**
 * The filters on `parent` (default: the ingress qdisc) of a device that
 * match traffic, with their actions decoded. No qdisc there: `[]`.
 */
export function listFilters(
  sock: NetlinkConn,
  ifindex: number,
  parent: number = INGRESS_PARENT,
  opts: DeviceLabel = {},
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
      actions: kind === U32_KIND && options
        ? decodeActions(options.nested(PktCls.TCA_U32_ACT))
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

/**
 * struct tc_u32_sel with one key that matches every frame (mask 0, val 0 at
 * offset 0), terminal so its actions run: `match u32 0 0`.
 */
function encodeMatchAllSelector(): Uint8Array {
  const nkeys = 1;
  const b = new Uint8Array(
    TcStruct.TC_U32_SEL_LEN + nkeys * TcStruct.TC_U32_KEY_LEN,
  );
  // flags, offshift, nkeys; offmask/off/offoff/hoff/hmask and the key's
  // mask/val/off/offmask all stay 0.
  b[TcStruct.TC_U32_SEL_FLAGS_OFF] = PktCls.TC_U32_TERMINAL;
  b[TcStruct.TC_U32_SEL_NKEYS_OFF] = nkeys;
  return b;
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
function decodeActions(list: Attrs | undefined): ActionInfo[] {
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
    } satisfies MirredActionInfo;
  });
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
