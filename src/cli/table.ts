/**
 * Every command by name, with its one-line summary and the loader of its
 * module. Loaders are `import()` calls with string-literal specifiers, so
 * `deno compile` bundles every command while a CLI process loads only the
 * one it runs (tests/build/compile_guard_test.ts checks both).
 *
 * @module
 */
import type { AnyCommand } from "./command.ts";

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
    load: () => import("./commands/prepare.ts"),
  },
  add: {
    summary:
      "make the VM have NICs 0..N-1 (existing ones are kept as they are)",
    load: () => import("./commands/add.ts"),
  },
  remove: {
    summary: "tear down those NICs, keep the netns",
    load: () => import("./commands/remove.ts"),
  },
  delete: {
    summary:
      "tear down every NIC, the netns, the records and the lock of each VM",
    load: () => import("./commands/delete.ts"),
  },
  inspect: {
    summary: "show one NIC record",
    load: () => import("./commands/inspect.ts"),
  },
  list: {
    summary: "list NIC records with their states",
    load: () => import("./commands/list.ts"),
  },
  vms: {
    summary: "list the VMs this install holds, with or without NICs",
    load: () => import("./commands/vms.ts"),
  },
  verify: {
    summary: "check a VM against its records (exit 1 when broken)",
    load: () => import("./commands/verify.ts"),
  },
  recover: {
    summary:
      "repair what is broken; rebuild lost NICs with the same MAC and IPs",
    load: () => import("./commands/recover.ts"),
  },
  quiesce: {
    summary: "bring the VM's veths down while it is stopped",
    load: () => import("./commands/quiesce.ts"),
  },
  unquiesce: {
    summary: "bring the VM's veths up before it starts",
    load: () => import("./commands/unquiesce.ts"),
  },
  "guest-config": {
    summary: "the guest side of the records (ip=, netplan, networkd)",
    load: () => import("./commands/guest_config.ts"),
  },
  "hv-args": {
    summary:
      "what to pass QEMU, Cloud Hypervisor or Firecracker for the VM's NICs",
    load: () => import("./commands/hv_args.ts"),
  },
  gc: {
    summary: "collect every recorded VM not in the active set",
    load: () => import("./commands/gc.ts"),
  },
  "restore-records": {
    summary: "rebuild a lost or emptied database from the record backups",
    load: () => import("./commands/restore_records.ts"),
  },
  serve: {
    summary: "serve every command as an HTTP API on a Unix socket (the daemon)",
    load: () => import("./commands/serve.ts"),
  },
  networks: {
    summary: "conflists loaded, and which is the default",
    load: () => import("./commands/networks.ts"),
  },
  doctor: {
    summary: "check prerequisites (root, /dev/net/tun, plugins, netns dir)",
    load: () => import("./commands/doctor.ts"),
  },
  hooks: {
    summary: "hooks in effect, in run order",
    load: () => import("./commands/hooks.ts"),
  },
  events: {
    summary: "the event log: operations, outcomes, phase timings, traces",
    load: () => import("./commands/events.ts"),
  },
  version: {
    summary: "vmnic, Deno and the TS hooks compiled in",
    load: () => import("./commands/version.ts"),
  },
};

/** Whether `name` is a command. */
export function isCommand(name: string): boolean {
  return Object.hasOwn(COMMANDS, name);
}
