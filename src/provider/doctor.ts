/**
 * Prerequisite checks (`vmnic doctor`): root, /dev/net/tun, CNI plugins,
 * the netns dir and its mount propagation, libnftables (clone NICs),
 * conflists, the state dirs. With
 * `fix`, installs Debian's CNI plugins and creates missing dirs.
 *
 * @module
 */
import { checkTunDevice, hostKernel } from "../wiring/kernel.ts";
import { loadConfDir } from "../cni/config.ts";
import { LIBNFTABLES, nftUnavailable } from "../sys/libnftables.ts";
import type { ResolvedConfig } from "./config.ts";

/** One check's outcome. */
export interface DoctorCheck {
  name: string;
  ok: boolean;
  detail: string;
  /** What `--fix` did, when it acted. */
  fixed?: string;
}

/** The plugins the embedded network and common conflists need. */
export const REQUIRED_PLUGINS = ["bridge", "host-local", "loopback"];

/** Runs every check; with `fix`, repairs what it can first. */
export async function doctor(
  cfg: ResolvedConfig,
  fix = false,
): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  const root = Deno.uid() === 0;
  checks.push({
    name: "root",
    ok: root,
    detail: root
      ? "running as root"
      : "vmnic needs root (namespaces, TAP, netlink writes)",
  });

  let tunError = "";
  try {
    checkTunDevice();
  } catch (e) {
    tunError = e instanceof Error ? e.message : String(e);
  }
  checks.push({
    name: "/dev/net/tun",
    ok: !tunError,
    detail: tunError
      ? `${tunError}: load the tun module (modprobe tun)`
      : "present",
  });

  let missing = missingPlugins(cfg.cniBinDirs);
  let fixed: string | undefined;
  if (missing.length && fix) {
    fixed = await installPlugins();
    missing = missingPlugins(cfg.cniBinDirs);
  }
  checks.push({
    name: "cni plugins",
    ok: missing.length === 0,
    detail: missing.length
      ? `not found in ${cfg.cniBinDirs.join(":")}: ${missing.join(", ")} ` +
        "(apt-get install containernetworking-plugins, or vmnic doctor --fix)"
      : `${REQUIRED_PLUGINS.join(", ")} found`,
    ...(fixed ? { fixed } : {}),
  });

  for (
    const [name, dir] of [["netns dir", cfg.netnsDir], [
      "root dir",
      cfg.rootDir,
    ], ["run dir", cfg.runDir]]
  ) {
    let ok = statOrNull(dir)?.isDirectory === true;
    let made: string | undefined;
    if (!ok && fix && root) {
      Deno.mkdirSync(dir, {
        recursive: true,
        mode: name === "netns dir" ? 0o755 : 0o700,
      });
      ok = true;
      made = `created ${dir}`;
    }
    checks.push({
      name,
      ok: ok || name === "netns dir", // created on first use
      detail: ok ? dir : `${dir} missing (created on first use, or by --fix)`,
      ...(made ? { fixed: made } : {}),
    });
  }

  const nft = nftUnavailable();
  checks.push({
    name: "libnftables",
    ok: nft === null,
    detail: nft === null
      ? `${LIBNFTABLES} loads (clone NICs translate with it)`
      : `${nft}: clone NICs (add --clone-of) cannot be made`,
  });

  const prop = hostKernel.netnsDirPropagates(cfg.netnsDir);
  checks.push({
    name: "mount propagation",
    ok: prop.ok,
    detail: prop.ok
      ? `netns mounts under ${cfg.netnsDir} are visible host-wide`
      : prop.reason ?? "",
  });

  const nets = await loadConfDir(cfg.cniConfDir);
  checks.push({
    name: "conflists",
    ok: nets.errors.length === 0,
    detail: (nets.networks.length
      ? `${nets.networks.length} in ${cfg.cniConfDir}, default ${
        nets.networks[0].name
      }`
      : `none in ${cfg.cniConfDir}: the embedded network 'vmnic' serves`) +
      (nets.errors.length
        ? `; broken: ${
          nets.errors.map((e) => e.message).join("; ")
        }`
        : ""),
  });
  return checks;
}

function statOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.statSync(path);
  } catch {
    return null;
  }
}

function missingPlugins(dirs: string[]): string[] {
  return REQUIRED_PLUGINS.filter((p) =>
    !dirs.some((d) => statOrNull(`${d}/${p}`)?.isFile)
  );
}

async function installPlugins(): Promise<string> {
  let osRelease = "";
  try {
    osRelease = await Deno.readTextFile("/etc/os-release");
  } catch { /* unknown distribution */ }
  if (!/^(ID|ID_LIKE)=.*\b(debian|ubuntu)\b/m.test(osRelease)) {
    return "not Debian/Ubuntu: install the CNI plugins with your package manager";
  }
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  for (
    const args of [["update", "-qq"], [
      "install",
      "-y",
      "-qq",
      "containernetworking-plugins",
    ]]
  ) {
    const out = await new Deno.Command("apt-get", {
      args,
      env,
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!out.success) {
      return `apt-get ${args[0]} failed: ${
        new TextDecoder().decode(out.stderr).trim().split("\n").pop()
      }`;
    }
  }
  return "installed containernetworking-plugins";
}
