/**
 * `vmnic hv-args <vm> --for qemu|cloud-hypervisor|firecracker [--vhost]` /
 * `GET /v1/vms/{vm}/hv-args?for=…`.
 *
 * @module
 */
import { type Hypervisor, HYPERVISORS } from "../../provider/hv_args.ts";
import { validateVmId } from "../../provider/validate.ts";
import { InvalidInputError } from "../../provider/errors.ts";
import { str, UsageError } from "../args.ts";
import { defineCommand } from "../command.ts";
import { onlyQuery, queryFlag } from "../http_input.ts";
import { bool, hvArgsResult, oneOf } from "../schemas.ts";

export default defineCommand({
  name: "hv-args",
  usage: `vmnic hv-args <vm> --for ${HYPERVISORS.join("|")} [--vhost]`,
  positionals: [1, 1],
  options: {
    for: {
      type: "string",
      value: "HYPERVISOR",
      help: `one of ${HYPERVISORS.join(", ")}`,
    },
    vhost: {
      type: "boolean",
      help: "QEMU: vhost=on (needs /dev/vhost-net)",
    },
  },
  details: [
    "Prints, for every NIC of the VM, what the hypervisor needs (TAP, MAC,",
    "queue pairs, queue size), and how to start it inside the VM's netns,",
    "where the TAPs are. Text output is one argument per line, shell-quoted;",
    "--json gives { hypervisor, vmId, netnsPath, launch, args,",
    "networkInterfaces?, notes }.",
  ].join("\n"),
  parse(p) {
    const op = "hv-args";
    validateVmId(op, p.positionals[0]);
    const hv = str(p, "for");
    if (!hv || !(HYPERVISORS as readonly string[]).includes(hv)) {
      throw new UsageError(
        `hv-args: --for must be one of ${HYPERVISORS.join(", ")}`,
        op,
      );
    }
    return {
      vmId: p.positionals[0],
      hypervisor: hv as Hypervisor,
      vhost: p.values.vhost === true,
    };
  },
  run: (i, { provider }) =>
    provider.hvArgs(i.vmId, i.hypervisor, { vhost: i.vhost }),
  human: (a) =>
    [
      `# ${a.launch.note}`,
      [
        ...a.launch.nsenter,
        a.hypervisor === "cloud-hypervisor"
          ? "cloud-hypervisor"
          : a.hypervisor === "qemu"
          ? "qemu-system-x86_64"
          : "firecracker",
        "...",
      ].map(quote).join(" "),
      ...(a.args.length ? [a.args.map(quote).join(" ")] : []),
      ...(a.networkInterfaces
        ? [
          JSON.stringify(
            { "network-interfaces": a.networkInterfaces },
            null,
            2,
          ),
        ]
        : []),
      ...a.notes.map((n) => `# ${n}`),
    ].join("\n"),
  http: {
    method: "GET",
    path: "/v1/vms/{vm}/hv-args",
    query: {
      for: { schema: oneOf(...HYPERVISORS), description: "the hypervisor" },
      vhost: { schema: bool, description: "QEMU: vhost=on" },
    },
    response: hvArgsResult,
    input({ params, query }) {
      const op = "hv-args";
      validateVmId(op, params.vm);
      onlyQuery(op, params.vm, query, ["for", "vhost"]);
      const hv = query.for;
      if (!hv || !(HYPERVISORS as readonly string[]).includes(hv)) {
        throw new InvalidInputError(
          op,
          params.vm,
          `query parameter "for" must be one of ${HYPERVISORS.join(", ")}`,
        );
      }
      return {
        vmId: params.vm,
        hypervisor: hv as Hypervisor,
        vhost: queryFlag(op, params.vm, query, "vhost"),
      };
    },
    request: (i) => ({
      params: { vm: i.vmId },
      query: { for: i.hypervisor, ...(i.vhost ? { vhost: "true" } : {}) },
    }),
  },
});

/** A shell word for `s` (quoted when it holds anything but safe characters). */
function quote(s: string): string {
  return /^[A-Za-z0-9_.,:=\/@%+-]+$/.test(s)
    ? s
    : `'${s.replaceAll("'", `'\\''`)}'`;
}
