/**
 * Launch arguments for the hypervisors vmnic serves: given a VM's NICs (as
 * `list`/`inspect` return them), what to hand QEMU, Cloud Hypervisor or
 * Firecracker so the guest gets one virtio-net device per NIC, on that
 * NIC's TAP, with that NIC's MAC and queue pairs. Pure: nothing is run,
 * opened or read.
 *
 * Rules, per NIC `i` (taken in index order; `Q` = `numQueues`, the TAP's
 * queue pairs):
 *
 * - Only NICs in state `active` or `quiesced` are accepted: those are
 *   plumbed and always carry their MAC. Any other state (`adding`,
 *   `deleting`, `failed`) is refused, as is a NIC of another VM or of
 *   another netns.
 * - Every hypervisor must open the TAP from inside the VM's netns, where
 *   vmnic made it: {@linkcode HvArgs.launch} says how (`nsenter --net=`).
 * - QEMU: `-netdev tap,id=net<i>,ifname=tap<i>,script=no,downscript=no`
 *   plus `,queues=Q` when Q > 1 and `,vhost=on` when asked; then
 *   `-device virtio-net-pci,netdev=net<i>,mac=<mac>` plus
 *   `,mq=on,vectors=<2Q+2>` when Q > 1 (Q RX and Q TX vectors, one for
 *   config changes, one for the control queue) and
 *   `,rx_queue_size=<queueSize>` when `queueSize` is a power of two in
 *   [256, 1024], the only values QEMU accepts (it refuses to start on any
 *   other). Outside that range the property is left out, QEMU uses 256,
 *   and a note says so. `tx_queue_size` is never emitted: for a TAP
 *   backend QEMU silently caps it at 256 (only vhost-user and vDPA
 *   backends can go higher), so emitting it would promise what the guest
 *   does not get.
 * - Cloud Hypervisor: one `--net` followed by one value per NIC,
 *   `tap=tap<i>,mac=<mac>,num_queues=<2Q>,queue_size=<queueSize>`
 *   (`num_queues` counts RX and TX queues together). `queue_size` is
 *   emitted only when it is a power of two (what its virtio queues accept);
 *   otherwise it is left out (Cloud Hypervisor's default, 256) and a note
 *   says so.
 * - Firecracker: no arguments; `network-interfaces` entries
 *   `{ iface_id: "net<i>", host_dev_name: "tap<i>", guest_mac }` for its
 *   config file or `PUT /network-interfaces/{iface_id}`. Its virtio-net has
 *   a single queue pair, so a NIC with Q > 1 is refused (re-add it with
 *   `--queues 1`); its queue size is fixed at 256, so another `queueSize`
 *   only gets a note.
 *
 * Checked against:
 *
 * - QEMU 7.2's own `qemu-system-x86_64 -help` (the `-netdev tap` synopsis:
 *   id, ifname, script, downscript, vhost, queues), its man page
 *   (qemu-system-x86_64(1), "-netdev tap"; online:
 *   https://www.qemu.org/docs/master/system/invocation.html), `-device
 *   virtio-net-pci,help` (netdev, mac, mq, vectors, rx_queue_size,
 *   tx_queue_size) and its QMP `query-qmp-schema` (NetdevTapOptions).
 * - QEMU hw/net/virtio-net.c, virtio_net_device_realize(): the
 *   rx_queue_size and tx_queue_size checks and the cap
 *   `tx_queue_size = MIN(virtio_net_max_tx_queue_size(n), tx_queue_size)`
 *   (https://gitlab.com/qemu-project/qemu/-/blob/master/hw/net/virtio-net.c).
 * - Cloud Hypervisor docs/networking.md ("Use one `--net` command-line
 *   argument ... 1 or more space-separated strings"; num_queues is the
 *   total of TX and RX queues, default 2; queue_size default 256)
 *   (https://github.com/cloud-hypervisor/cloud-hypervisor/blob/main/docs/networking.md),
 *   and NetConfig::SYNTAX in vmm/src/config.rs.
 * - rust-vmm virtio-queue `Queue::new` (size must be a power of two up to
 *   32768), which Cloud Hypervisor's devices use
 *   (https://github.com/rust-vmm/vm-virtio/blob/main/virtio-queue/src/queue.rs).
 * - Firecracker docs/network-setup.md ("network-interfaces": iface_id,
 *   guest_mac, host_dev_name; "no multi queue support")
 *   (https://github.com/firecracker-microvm/firecracker/blob/main/docs/network-setup.md),
 *   and src/vmm/src/devices/virtio/net/mod.rs (NET_NUM_QUEUES = 2,
 *   NET_QUEUE_MAX_SIZE = 256).
 *
 * @module
 */
import { InvalidInputError, NotFoundError } from "./errors.ts";
import { MAX_NIC_INDEX, MAX_QUEUES, normalizeMac } from "./validate.ts";
import type { NicConfig } from "./types.ts";

/** The hypervisors {@linkcode hypervisorArgs} knows. */
export const HYPERVISORS = ["qemu", "cloud-hypervisor", "firecracker"] as const;

/** One of {@linkcode HYPERVISORS}. */
export type Hypervisor = typeof HYPERVISORS[number];

/** Options of {@linkcode hypervisorArgs}. */
export interface HvArgsOptions {
  /**
   * QEMU only: `vhost=on` on every `-netdev tap` (default false). vhost-net
   * moves the virtio-net data path into the host kernel, but QEMU must then
   * open `/dev/vhost-net` (the `vhost_net` module) and refuses to start the
   * netdev when it cannot, and the in-kernel path relies on KVM (ioeventfd,
   * irqfd), so it brings nothing under TCG. Off by default so the arguments
   * work on any host; turn it on for KVM hosts that have `/dev/vhost-net`.
   */
  vhost?: boolean;
}

/** What to run: the arguments of one hypervisor for one VM's NICs. */
export interface HvArgs {
  /** The hypervisor the arguments are for. */
  hypervisor: Hypervisor;
  /** The VM. */
  vmId: string;
  /** The VM's netns path, where its TAPs live. */
  netnsPath: string;
  /** How to start the hypervisor inside the VM's netns. */
  launch: {
    /** Command prefix: `["nsenter", "--net=<netnsPath>", "--"]`. */
    nsenter: string[];
    /** Why, in one sentence. */
    note: string;
  };
  /** Command-line arguments (qemu, cloud-hypervisor), in order; empty for Firecracker. */
  args: string[];
  /** Firecracker: the `network-interfaces` entries of its config/API. */
  networkInterfaces?: {
    /** `net<index>`. */
    iface_id: string;
    /** The TAP, `tap<index>`. */
    host_dev_name: string;
    /** The NIC's MAC. */
    guest_mac: string;
  }[];
  /**
   * What was asked for but could not be expressed (a queue size the
   * hypervisor does not accept), one sentence each; empty when nothing.
   */
  notes: string[];
}

const OP = "hv-args";

/** Smallest and largest `rx_queue_size` QEMU's virtio-net accepts. */
const QEMU_RX_QUEUE_MIN = 256;
const QEMU_RX_QUEUE_MAX = 1024;

/** A Linux interface name that cannot break an option string (no `,`, `=`, space). */
const TAP_NAME = /^[A-Za-z0-9_.-]{1,15}$/;

/** Firecracker's fixed virtio-net queue size. */
const FIRECRACKER_QUEUE_SIZE = 256;

/** A NIC checked and reduced to what the arguments need. */
interface HvNic {
  index: number;
  tap: string;
  mac: string;
  queues: number;
  queueSize: number;
  /** The network and `address/prefix` of each IP, for a re-add hint. */
  network: string;
  ips: string[];
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

function isHypervisor(hv: unknown): hv is Hypervisor {
  return (HYPERVISORS as readonly unknown[]).includes(hv);
}

/**
 * The launch arguments of `hv` for the NICs of VM `vmId` (see the module
 * doc for the rules).
 *
 * @throws {InvalidInputError} unknown hypervisor; a NIC not `active` or
 * `quiesced`, without a valid MAC, of another VM or netns, or given twice;
 * for Firecracker, a NIC with more than one queue pair.
 * @throws {NotFoundError} no NICs.
 */
export function hypervisorArgs(
  vmId: string,
  nics: NicConfig[],
  hv: Hypervisor,
  opts: HvArgsOptions = {},
): HvArgs {
  if (!isHypervisor(hv)) {
    throw new InvalidInputError(
      OP,
      vmId,
      `unknown hypervisor ${JSON.stringify(hv)}: expected one of ${
        HYPERVISORS.join(", ")
      }`,
    );
  }
  if (nics.length === 0) {
    throw new NotFoundError(
      OP,
      vmId,
      "the VM has no NICs: add one first (vmnic add)",
    );
  }
  const netnsPath = nics[0].netnsPath;
  const checked = [...nics]
    .sort((a, b) => a.index - b.index)
    .map((nic) => checkNic(vmId, netnsPath, nic));
  for (let k = 1; k < checked.length; k++) {
    if (checked[k].index === checked[k - 1].index) {
      throw new InvalidInputError(
        OP,
        `${vmId}/${checked[k].index}`,
        "NIC given twice",
      );
    }
  }

  const notes: string[] = [];
  const base = {
    hypervisor: hv,
    vmId,
    netnsPath,
    launch: {
      nsenter: ["nsenter", `--net=${netnsPath}`, "--"],
      note:
        `The TAPs live in the VM's netns (${netnsPath}), so the hypervisor ` +
        "must open them from there: start it under this prefix (or have it " +
        "setns(2) to that path before it opens them).",
    },
    notes,
  };
  switch (hv) {
    case "qemu":
      return { ...base, args: qemuArgs(vmId, checked, opts, notes) };
    case "cloud-hypervisor":
      return { ...base, args: cloudHypervisorArgs(vmId, checked, notes) };
    case "firecracker":
      return {
        ...base,
        args: [],
        networkInterfaces: firecrackerInterfaces(vmId, checked, notes),
      };
  }
}

/** One NIC, refused unless it can go to a hypervisor as it is. */
function checkNic(vmId: string, netnsPath: string, nic: NicConfig): HvNic {
  const object = `${vmId}/${nic.index}`;
  const refuse = (reason: string): never => {
    throw new InvalidInputError(OP, object, reason);
  };
  if (
    !Number.isInteger(nic.index) || nic.index < 0 || nic.index > MAX_NIC_INDEX
  ) {
    refuse(`invalid NIC index: expected 0–${MAX_NIC_INDEX}`);
  }
  if (nic.vmId !== vmId) refuse(`the NIC belongs to VM ${nic.vmId}`);
  if (nic.netnsPath !== netnsPath) {
    refuse(
      `the NIC is in netns ${nic.netnsPath}, the VM's other NICs in ${netnsPath}`,
    );
  }
  if (nic.state !== "active" && nic.state !== "quiesced") {
    refuse(
      `the NIC is ${nic.state}: only active or quiesced NICs can be given ` +
        "to a hypervisor (see vmnic verify / vmnic recover)",
    );
  }
  if (nic.mac === undefined) refuse("the NIC has no MAC recorded");
  const mac = normalizeMac(OP, object, nic.mac!);
  if (!TAP_NAME.test(nic.tap)) {
    refuse(`invalid TAP name ${JSON.stringify(nic.tap)}`);
  }
  if (
    !Number.isInteger(nic.numQueues) || nic.numQueues < 1 ||
    nic.numQueues > MAX_QUEUES
  ) {
    refuse(
      `invalid queue pair count ${nic.numQueues}: expected 1–${MAX_QUEUES}`,
    );
  }
  if (!Number.isInteger(nic.queueSize) || nic.queueSize < 1) {
    refuse(`invalid queue size ${nic.queueSize}: expected a positive integer`);
  }
  return {
    index: nic.index,
    tap: nic.tap,
    mac,
    queues: nic.numQueues,
    queueSize: nic.queueSize,
    network: nic.network,
    ips: nic.ips.map((ip) => `${ip.address}/${ip.prefix}`),
  };
}

function qemuArgs(
  vmId: string,
  nics: HvNic[],
  opts: HvArgsOptions,
  notes: string[],
): string[] {
  const args: string[] = [];
  for (const nic of nics) {
    const id = `net${nic.index}`;
    const netdev = [
      "tap",
      `id=${id}`,
      `ifname=${nic.tap}`,
      "script=no",
      "downscript=no",
    ];
    if (nic.queues > 1) netdev.push(`queues=${nic.queues}`);
    if (opts.vhost) netdev.push("vhost=on");

    const device = ["virtio-net-pci", `netdev=${id}`, `mac=${nic.mac}`];
    if (nic.queues > 1) {
      device.push("mq=on", `vectors=${2 * nic.queues + 2}`);
    }
    if (
      isPowerOfTwo(nic.queueSize) && nic.queueSize >= QEMU_RX_QUEUE_MIN &&
      nic.queueSize <= QEMU_RX_QUEUE_MAX
    ) {
      device.push(`rx_queue_size=${nic.queueSize}`);
    } else {
      notes.push(
        `${vmId}/${nic.index}: queue size ${nic.queueSize} left out: QEMU's ` +
          `rx_queue_size must be a power of two in [${QEMU_RX_QUEUE_MIN}, ` +
          `${QEMU_RX_QUEUE_MAX}], so QEMU uses its default (256)`,
      );
    }
    args.push("-netdev", netdev.join(","), "-device", device.join(","));
  }
  return args;
}

function cloudHypervisorArgs(
  vmId: string,
  nics: HvNic[],
  notes: string[],
): string[] {
  const values = nics.map((nic) => {
    const parts = [
      `tap=${nic.tap}`,
      `mac=${nic.mac}`,
      `num_queues=${2 * nic.queues}`,
    ];
    if (isPowerOfTwo(nic.queueSize)) {
      parts.push(`queue_size=${nic.queueSize}`);
    } else {
      notes.push(
        `${vmId}/${nic.index}: queue size ${nic.queueSize} left out: Cloud ` +
          "Hypervisor's virtio queues take a power of two, so it uses its " +
          "default (256)",
      );
    }
    return parts.join(",");
  });
  return ["--net", ...values];
}

function firecrackerInterfaces(
  vmId: string,
  nics: HvNic[],
  notes: string[],
): NonNullable<HvArgs["networkInterfaces"]> {
  return nics.map((nic) => {
    if (nic.queues > 1) {
      const readd = [
        "vmnic add",
        vmId,
        `--index ${nic.index}`,
        `--network ${nic.network}`,
        `--mac ${nic.mac}`,
        ...nic.ips.map((ip) => `--ip ${ip}`),
        "--queues 1",
      ].join(" ");
      throw new InvalidInputError(
        OP,
        `${vmId}/${nic.index}`,
        `the NIC has ${nic.queues} queue pairs, but Firecracker's virtio-net ` +
          "is single-queue: re-add the NIC with --queues 1 " +
          `(vmnic remove ${vmId} ${nic.index}; ${readd})`,
      );
    }
    if (nic.queueSize !== FIRECRACKER_QUEUE_SIZE) {
      notes.push(
        `${vmId}/${nic.index}: queue size ${nic.queueSize} not applied: ` +
          `Firecracker's virtio-net queue size is fixed at ${FIRECRACKER_QUEUE_SIZE}`,
      );
    }
    return {
      iface_id: `net${nic.index}`,
      host_dev_name: nic.tap,
      guest_mac: nic.mac,
    };
  });
}
