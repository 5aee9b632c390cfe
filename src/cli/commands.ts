/**
 * The CLI's commands: usage text, the options and arguments each accepts.
 * Parsing lives in `args.ts`; running and printing in `main.ts`.
 *
 * @module
 */

/** A command's help and the command-specific options it accepts. */
export interface CommandSpec {
  usage: string;
  summary: string;
  options: string[];
  /** Positional arguments: [min, max] (max -1 = any). */
  positionals: [number, number];
  details?: string;
}

/** Options every command accepts. */
export const GLOBAL_OPTIONS = [
  "json",
  "help",
  "root-dir",
  "run-dir",
  "cni-conf-dir",
  "cni-bin-dir",
  "netns-dir",
  "netns-prefix",
  "hooks-dir",
];

/** Every command, by name. */
export const COMMANDS: Record<string, CommandSpec> = {
  prepare: {
    usage: "vmnic prepare <vm>",
    summary: "create the VM's network namespace (idempotent); prints its path",
    options: [],
    positionals: [1, 1],
  },
  add: {
    usage:
      "vmnic add <vm> [--network NAME] [--nics N] [--cpu N] [--queues N] [--queue-size N]\n" +
      "              [--index I [--mac MAC] [--ip CIDR]...]",
    summary: "add NICs: CNI ADD in the VM's netns, a TAP wired to each veth",
    options: [
      "network",
      "nics",
      "cpu",
      "queues",
      "queue-size",
      "index",
      "mac",
      "ip",
    ],
    positionals: [1, 1],
    details:
      "  --nics N        add N NICs at the next free indices (default 1)\n" +
      "  --cpu N         vCPUs: one TAP queue pair per vCPU (default 1)\n" +
      "  --queues N      queue pairs per TAP, overriding --cpu\n" +
      "  --queue-size N  virtio queue size to record (default 256)\n" +
      "  --index I       add exactly this index (0-31)\n" +
      "  --mac MAC       recovery: give the NIC this MAC (with --index)\n" +
      "  --ip CIDR       recovery: re-request this IP (repeatable, with --index)",
  },
  remove: {
    usage: "vmnic remove <vm> <index>...",
    summary: "tear down those NICs, keep the netns",
    options: [],
    positionals: [2, -1],
  },
  delete: {
    usage: "vmnic delete <vm>...",
    summary: "tear down every NIC, the netns and the records of each VM",
    options: [],
    positionals: [1, -1],
  },
  inspect: {
    usage: "vmnic inspect <nic-id>",
    summary: "show one NIC record",
    options: [],
    positionals: [1, 1],
  },
  list: {
    usage: "vmnic list [--vm ID]",
    summary: "list NIC records",
    options: ["vm"],
    positionals: [0, 0],
  },
  verify: {
    usage: "vmnic verify <vm>",
    summary: "check the netns and every recorded TAP (exit 1 when broken)",
    options: [],
    positionals: [1, 1],
  },
  recover: {
    usage: "vmnic recover <vm>",
    summary: "after a reboot: same netns, MACs and IPs from the records",
    options: [],
    positionals: [1, 1],
  },
  gc: {
    usage: "vmnic gc (--active ID,... | --active-file F) [--dry-run]",
    summary: "collect every VM not in the active set",
    options: ["active", "active-file", "dry-run"],
    positionals: [0, 0],
    details:
      "  --active IDS       comma-separated VM ids to keep (may be empty: --active '')\n" +
      "  --active-file F    file with VM ids to keep, one per line ('-' = stdin)\n" +
      "  --dry-run          list what would be collected, touch nothing",
  },
  quiesce: {
    usage: "vmnic quiesce <vm>",
    summary: "bring the VM's veths down while it is stopped",
    options: [],
    positionals: [1, 1],
  },
  unquiesce: {
    usage: "vmnic unquiesce <vm>",
    summary: "bring the VM's veths up before it starts",
    options: [],
    positionals: [1, 1],
  },
  "guest-config": {
    usage: "vmnic guest-config <vm> --format cmdline|netplan|networkd",
    summary: "the guest side of the records",
    options: ["format"],
    positionals: [1, 1],
  },
  networks: {
    usage: "vmnic networks",
    summary: "conflists loaded, and which is the default",
    options: [],
    positionals: [0, 0],
  },
  doctor: {
    usage: "vmnic doctor [--fix]",
    summary: "check prerequisites (root, /dev/net/tun, CNI plugins, netns dir)",
    options: ["fix"],
    positionals: [0, 0],
    details:
      "  --fix   install containernetworking-plugins (Debian/Ubuntu) and create missing dirs",
  },
  hooks: {
    usage: "vmnic hooks",
    summary: "hooks in effect, in run order",
    options: [],
    positionals: [0, 0],
  },
  version: {
    usage: "vmnic version",
    summary: "vmnic, Deno and the TS hooks compiled in",
    options: [],
    positionals: [0, 0],
  },
};

/** The top-level usage text. */
export function mainUsage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return [
    "vmnic: CNI networking for microVMs (netns + CNI + TAP per VM)",
    "",
    "Usage: vmnic <command> [args] [--json] [options]",
    "",
    "Commands:",
    ...Object.entries(COMMANDS).map(([name, c]) =>
      `  ${name.padEnd(width)}  ${c.summary}`
    ),
    "",
    GLOBAL_HELP,
    "",
    "Exit codes: 0 done, 1 operation failed, 2 bad usage or invalid input, 3 not found.",
    "Run 'vmnic <command> --help' for a command's options.",
  ].join("\n");
}

/** Help of one command. */
export function commandUsage(name: string): string {
  const c = COMMANDS[name];
  return [
    `Usage: ${c.usage}`,
    "",
    c.summary,
    ...(c.details ? ["", "Options:", c.details] : []),
    "",
    GLOBAL_HELP,
  ].join("\n");
}

const GLOBAL_HELP = [
  "Global options (flag, then environment, then default):",
  "  --json                  machine-readable output",
  "  --root-dir DIR          VMNIC_ROOT_DIR      /var/lib/vmnic (vmnic.db)",
  "  --run-dir DIR           VMNIC_RUN_DIR       /run/vmnic (locks)",
  "  --cni-conf-dir DIR      VMNIC_CNI_CONF_DIR  /etc/cni/net.d",
  "  --cni-bin-dir DIRS      VMNIC_CNI_BIN_DIR   /opt/cni/bin:/usr/lib/cni:/usr/libexec/cni",
  "  --netns-dir DIR         VMNIC_NETNS_DIR     /var/run/netns",
  "  --netns-prefix P        VMNIC_NETNS_PREFIX  vmnic-",
  "  --hooks-dir DIR         VMNIC_HOOKS_DIR     /etc/vmnic/hooks.d",
].join("\n");
