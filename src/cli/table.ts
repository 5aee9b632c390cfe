/**
 * Every command by name, with its one-line summary and the loader of its
 * module. A CLI process loads only the command it runs; the loaders go
 * through {@linkcode onDemand}, whose specifier `deno run` does not chase
 * at start-up (string-literal `import()`s cost ~11 ms of module graph
 * walking per run), and which `deno compile` bundles by the compile task's
 * `--include` (tests/build/compile_guard_test.ts checks both).
 *
 * @module
 */
import type { AnyCommand } from "./command.ts";

/**
 * `import(specifier)`, relative to this module. The specifier is a
 * parameter on purpose: see the module doc.
 */
function onDemand<T>(specifier: string): Promise<T> {
  return import(specifier);
}

/** A command's entry: what `vmnic --help` says, and how to load it. */
export interface CommandEntry {
  /** One line for `vmnic --help`. */
  summary: string;
  /** Loads the command's module. */
  load(): Promise<{ default: AnyCommand }>;
}

/** The commands, in the order `vmnic --help` lists them. */
export const COMMANDS: Record<string, CommandEntry> = {
  prepare: {
    summary: "make the VM's record and netns (idempotent); prints its path",
    load: () => onDemand("./commands/prepare.ts"),
  },
  add: {
    summary:
      "make the VM have NICs 0..N-1 (existing ones are kept as they are)",
    load: () => onDemand("./commands/add.ts"),
  },
  remove: {
    summary: "tear down those NICs, keep the netns",
    load: () => onDemand("./commands/remove.ts"),
  },
  delete: {
    summary:
      "tear down every NIC, the netns, the records and the lock of each VM",
    load: () => onDemand("./commands/delete.ts"),
  },
  inspect: {
    summary: "show one NIC record",
    load: () => onDemand("./commands/inspect.ts"),
  },
  list: {
    summary: "list NIC records with their states",
    load: () => onDemand("./commands/list.ts"),
  },
  policy: {
    summary:
      "change a live NIC's policy: rates, anti-spoofing, egress rules, isolation",
    load: () => onDemand("./commands/policy.ts"),
  },
  find: {
    summary: "the NIC holding an address (list --ip over every VM)",
    load: () => onDemand("./commands/find.ts"),
  },
  vms: {
    summary: "list the VMs this install holds, with or without NICs",
    load: () => onDemand("./commands/vms.ts"),
  },
  verify: {
    summary: "check a VM against its records (exit 1 when broken)",
    load: () => onDemand("./commands/verify.ts"),
  },
  recover: {
    summary:
      "repair what is broken; rebuild lost NICs with the same MAC and IPs",
    load: () => onDemand("./commands/recover.ts"),
  },
  quiesce: {
    summary: "bring the VM's veths down while it is stopped",
    load: () => onDemand("./commands/quiesce.ts"),
  },
  unquiesce: {
    summary: "bring the VM's veths up before it starts",
    load: () => onDemand("./commands/unquiesce.ts"),
  },
  "guest-config": {
    summary: "the guest side of the records (ip=, netplan, networkd)",
    load: () => onDemand("./commands/guest_config.ts"),
  },
  "hv-args": {
    summary:
      "what to pass QEMU, Cloud Hypervisor or Firecracker for the VM's NICs",
    load: () => onDemand("./commands/hv_args.ts"),
  },
  gc: {
    summary: "collect every recorded VM not in the active set",
    load: () => onDemand("./commands/gc.ts"),
  },
  "restore-records": {
    summary: "rebuild a lost or emptied database from the record backups",
    load: () => onDemand("./commands/restore_records.ts"),
  },
  serve: {
    summary: "serve every command as an HTTP API on a Unix socket (the daemon)",
    load: () => onDemand("./commands/serve.ts"),
  },
  networks: {
    summary: "conflists loaded, and which is the default",
    load: () => onDemand("./commands/networks.ts"),
  },
  doctor: {
    summary: "check prerequisites (root, /dev/net/tun, plugins, netns dir)",
    load: () => onDemand("./commands/doctor.ts"),
  },
  hooks: {
    summary: "hooks in effect, in run order",
    load: () => onDemand("./commands/hooks.ts"),
  },
  events: {
    summary: "the event log: operations, outcomes, phase timings, traces",
    load: () => onDemand("./commands/events.ts"),
  },
  version: {
    summary: "vmnic, Deno and the TS hooks compiled in",
    load: () => onDemand("./commands/version.ts"),
  },
};

/** Whether `name` is a command. */
export function isCommand(name: string): boolean {
  return Object.hasOwn(COMMANDS, name);
}
