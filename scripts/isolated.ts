/**
 * Runs `deno test`, `deno bench` or a bench script (`run FILE`) for vmnic
 * with explicit permissions (`deno task test|bench|bench:daemon [args]`).
 *
 * As root, the whole run happens inside a throwaway network namespace
 * (`unshare --net`): the CNI bridges and gateways the tests make live there
 * and vanish with it, so nothing touches this machine's real network. The
 * named per-VM namespaces the tests create carry a unique prefix per run and
 * are removed by the tests themselves. Without root, the root-only tests skip
 * and say why.
 *
 * vmnic has no npm, JSR or remote dependencies (only Deno's built-ins and its
 * own modules), so nothing needs caching before a run moves into a namespace
 * without network. Adding one would mean caching it here first.
 *
 * @module
 */

const PERMISSIONS = [
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-run",
  "--allow-env",
  "--allow-sys",
  // Unix sockets: the daemon's API (`vmnic serve`).
  "--allow-net",
];

const [sub, ...rest] = Deno.args;
if (sub !== "test" && sub !== "bench" && sub !== "run") {
  console.error("usage: isolated.ts test|bench|run [deno args]");
  Deno.exit(2);
}
/** Debian packages the tests drive for real (installed when missing). */
const TEST_PACKAGES = [
  "iproute2",
  "util-linux",
  "containernetworking-plugins",
  "iptables",
  "iputils-ping",
  // A real guest for tests/e2e (scripts/build_guest.ts builds it from these).
  "qemu-system-x86",
  "linux-image-amd64",
  "busybox-static",
  "cpio",
  // Real validators of guest-config's output (tests/provider/guest_config_test.ts).
  "netplan.io",
  "cloud-init",
  // Clone NICs: libnftables through FFI (product code), nft as the tests'
  // oracle (tests/clone), iperf3 for bench/clone.ts, tests/e2e/policy_test.ts
  // and their guests.
  "libnftables1",
  "nftables",
  "iperf3",
  // Many hosts (tests/multihost, bench/dhcp.ts): Kea serves the cluster's
  // addresses with its leases in PostgreSQL (each test runs its own
  // instances of both; kea-admin makes Kea's schema).
  "kea-dhcp4-server",
  "kea-admin",
  "postgresql",
];

const deno = Deno.execPath();
if (sub === "test" && Deno.uid() === 0) await ensurePackages(TEST_PACKAGES);
const isolate = Deno.uid() === 0 && await hasUnshare();
if (!isolate) {
  console.error(
    `vmnic ${sub}: not root (or no unshare): root-only ${sub}s will be skipped`,
  );
}
// Benchmarks each get a fresh namespace: one leaves its CNI bridge behind,
// and the next must start from a namespace holding only `lo`.
const runs = sub === "bench" && !rest.some((a) => a.endsWith(".ts"))
  ? (await benchFiles()).map((file) => [...rest, file])
  : [rest];
let code = 0;
for (const extra of runs) {
  const args = [sub, ...PERMISSIONS, ...extra];
  const cmd = isolate
    ? new Deno.Command("unshare", { args: ["--net", "--", deno, ...args] })
    : new Deno.Command(deno, { args });
  const status = await cmd.spawn().status;
  if (!status.success) code = status.code || 1;
}
Deno.exit(code);

/** The bench files, in name order. */
async function benchFiles(): Promise<string[]> {
  const dir = new URL("../bench/", import.meta.url).pathname;
  const files: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.endsWith("_bench.ts")) files.push(`bench/${e.name}`);
  }
  return files.sort();
}

async function hasUnshare(): Promise<boolean> {
  try {
    const { success } = await new Deno.Command("unshare", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
}

/** Installs the missing ones of `pkgs` with apt-get (Debian/Ubuntu only). */
async function ensurePackages(pkgs: string[]): Promise<void> {
  const missing: string[] = [];
  for (const p of pkgs) {
    const ok = await new Deno.Command("dpkg-query", {
      args: ["-W", "-f=${Status}", p],
      stdout: "piped",
      stderr: "null",
    }).output().then(
      (o) =>
        new TextDecoder().decode(o.stdout).includes("install ok installed"),
      () => true, // no dpkg: not Debian, nothing to do here
    );
    if (!ok) missing.push(p);
  }
  if (!missing.length) return;
  console.error(`vmnic test: installing ${missing.join(" ")} (apt-get)`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  for (
    const args of [["update", "-qq"], ["install", "-y", "-qq", ...missing]]
  ) {
    const { success } = await new Deno.Command("apt-get", { args, env })
      .spawn().status;
    if (!success) {
      console.error(`vmnic test: apt-get ${args[0]} failed`);
      Deno.exit(1);
    }
  }
}
