/**
 * The main job on a fresh host (`deno task demo`): check and install the
 * prerequisites, then give a VM its network and take it away again, all
 * inside a throwaway network namespace so this machine's network is never
 * touched.
 *
 * Steps: `vmnic doctor --fix` on the host (installs Debian's CNI plugins
 * when missing), then inside `unshare --net`: the embedded default network,
 * `add` of a 2-vCPU VM's NIC, what the kernel shows for it (`ip`, `tc`),
 * `verify`, the guest's kernel `ip=` parameter, `quiesce`/`unquiesce`,
 * `delete`, and a check that nothing is left.
 *
 * @module
 */
import { DEFAULT_NETNS_DIR } from "../src/kernel/netns.ts";
import { claimPath } from "../src/provider/ownership.ts";

const PERMS = [
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-run",
  "--allow-env",
  "--allow-sys=uid",
];
const deno = Deno.execPath();
const root = new URL("..", import.meta.url).pathname;
const cli = `${root}src/cli/main.ts`;
/** The demo's own dirs and prefix, passed to every vmnic call, not shown. */
let flags: string[] = [];

if (Deno.uid() !== 0) {
  console.error(
    "vmnic demo: needs root (network namespaces, TAP devices, netlink).",
  );
  Deno.exit(1);
}

if (!Deno.args.includes("--inside")) {
  await show("vmnic", ["doctor", "--fix"]);
  const { code } = await new Deno.Command("unshare", {
    args: [
      "--net",
      "--",
      deno,
      "run",
      ...PERMS,
      new URL(import.meta.url).pathname,
      "--inside",
    ],
  }).spawn().status;
  Deno.exit(code);
}

// Inside the throwaway netns: it plays the host, holding the vmnic0 bridge.
const tmp = await Deno.makeTempDir({ prefix: "vmnic-demo-" });
const prefix = `vmnicdemo${Deno.pid}-`;
flags = [
  "--root-dir",
  `${tmp}/lib`,
  "--run-dir",
  `${tmp}/run`,
  "--cni-conf-dir",
  `${tmp}/net.d`,
  "--hooks-dir",
  `${tmp}/hooks.d`,
  "--netns-prefix",
  prefix,
];
const ns = `${prefix}demo-vm`;
let failed = false;
try {
  await show("vmnic", ["networks", ...flags]);
  failed ||= !await show("vmnic", ["add", "demo-vm", "--cpu", "2", ...flags]);
  await show("vmnic", ["list", "--json", ...flags]);
  await show("ip", ["-n", ns, "-br", "link"]);
  await show("ip", ["-n", ns, "-d", "link", "show", "tap0"]);
  await show("tc", ["-n", ns, "filter", "show", "dev", "eth0", "ingress"]);
  failed ||= !await show("vmnic", ["verify", "demo-vm", ...flags]);
  await show("vmnic", [
    "guest-config",
    "demo-vm",
    "--format",
    "cmdline",
    ...flags,
  ]);
  failed ||= !await show("vmnic", ["quiesce", "demo-vm", ...flags]);
  failed ||= !await show("vmnic", ["unquiesce", "demo-vm", ...flags]);
} finally {
  failed ||= !await show("vmnic", ["delete", "demo-vm", ...flags]);
  await show("vmnic", ["list", ...flags]);
  // Its prefix claim names a root dir that goes now: it goes too, unless
  // a netns under the prefix is left (the claim still guards it then).
  const claim = claimPath(DEFAULT_NETNS_DIR, prefix);
  const netnsLeft = (await output("ip", ["netns", "list"])).includes(prefix);
  if (!netnsLeft) await Deno.remove(claim).catch(() => {});
  const left = netnsLeft ||
    await Deno.lstat(claim).then(() => true, () => false);
  console.log(
    left
      ? "\nLEAK: a netns or the prefix claim of the demo is still there"
      : "\nnothing left behind: no netns, no TAP, no record, no prefix claim",
  );
  await Deno.remove(tmp, { recursive: true });
  if (left) failed = true;
}
Deno.exit(failed ? 1 : 0);

async function show(cmd: string, args: string[]): Promise<boolean> {
  const shown = args.filter((a, i) =>
    !flags.includes(a) && !flags.includes(args[i - 1])
  );
  console.log(`\n$ ${cmd} ${shown.join(" ")}`);
  const c = cmd === "vmnic"
    ? new Deno.Command(deno, { args: ["run", ...PERMS, cli, ...args] })
    : new Deno.Command(cmd, { args });
  const { success } = await c.spawn().status;
  return success;
}

async function output(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stderr: "null" }).output();
  return new TextDecoder().decode(out.stdout);
}
