/**
 * Prerequisite checks (`vmnic doctor`): root, /dev/net/tun, CNI plugins,
 * the netns dir and its mount propagation, libnftables (clone NICs),
 * conflists, the state dirs. With
 * `fix`, installs Debian's CNI plugins and creates missing dirs.
 *
 * @module
 */
import { checkTunDevice, hostKernel } from "../wiring/kernel.ts";
import { loadConfDir, type NetworkConfigList } from "../cni/config.ts";
import { CniRuntime } from "../cni/runtime.ts";
import { versionAtLeast } from "../cni/version.ts";
import { probeTcFeatures, type TcFeatures } from "../wiring/tap_policy.ts";
import { loadPolicyFile } from "./policy.ts";
import { networkStatus } from "./cni_verbs.ts";
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

  // Every plugin a conflist names (and its IPAM), besides the embedded
  // network's.
  const named = await namedPlugins(cfg.cniConfDir);
  let missing = missingPlugins(cfg.cniBinDirs, named);
  let fixed: string | undefined;
  if (missing.length && fix) {
    fixed = await installPlugins();
    missing = missingPlugins(cfg.cniBinDirs, named);
  }
  checks.push({
    name: "cni plugins",
    ok: missing.length === 0,
    detail: missing.length
      ? `not found in ${cfg.cniBinDirs.join(":")}: ${missing.join(", ")} ` +
        "(apt-get install containernetworking-plugins, or vmnic doctor --fix)"
      : `${named.join(", ")} found`,
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
  checks.push(...await policyChecks(cfg, nets.networks, root));
  return checks;
}

/**
 * What the policy needs (docs/policy.md): the TC kinds this kernel has
 * (u32, mirred and ingress are required; tbf makes rates; police, gact,
 * flower, matchall are reported), the policy file, and CNI STATUS of the
 * chains that speak 1.1.
 */
async function policyChecks(
  cfg: ResolvedConfig,
  lists: readonly NetworkConfigList[],
  root: boolean,
): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  if (!root) {
    checks.push({
      name: "policy features",
      ok: false,
      detail: "not probed: needs root (a throwaway netns)",
    });
  } else {
    try {
      const f = probeTcFeatures();
      const yes = (k: keyof TcFeatures) => `${k} ${f[k] ? "yes" : "no"}`;
      const required = f.ingress && f.u32 && f.mirred;
      checks.push({
        name: "policy features",
        ok: required,
        detail: [
          `allow-lists (${yes("ingress")}, ${yes("u32")}, ${yes("mirred")})`,
          `rates (${yes("tbf")}, ${yes("htb")})`,
          `not used, reported: ${yes("police")}, ${yes("gact")}, ${
            yes("flower")
          }, ${yes("matchall")}`,
        ].join("; ") +
          (required ? "" : ": the TAP path cannot be wired without them") +
          (f.tbf ? "" : "; without tbf, rate limits are refused"),
      });
    } catch (e) {
      checks.push({
        name: "policy features",
        ok: false,
        detail: `probe failed: ${(e as Error).message}`,
      });
    }
  }
  try {
    const file = loadPolicyFile("doctor", cfg.policyFile);
    const n = Object.keys(file.networks).length;
    checks.push({
      name: "policy file",
      ok: true,
      detail: n
        ? `${cfg.policyFile}: defaults for ${
          Object.keys(file.networks).join(", ")
        }`
        : `${cfg.policyFile}: none (built-in defaults: anti-spoofing on, ` +
          `169.254.169.254 denied)`,
    });
  } catch (e) {
    checks.push({
      name: "policy file",
      ok: false,
      detail: (e as { reason?: string }).reason ?? (e as Error).message,
    });
  }
  const v11 = lists.filter((l) => versionAtLeast(l.cniVersion, "1.1.0"));
  if (v11.length) {
    const cni = new CniRuntime({
      binDirs: cfg.cniBinDirs,
      timeoutMs: cfg.pluginTimeoutMs,
    });
    const states = await Promise.all(
      v11.map(async (l) => [l.name, await networkStatus(cni, l)] as const),
    );
    const bad = states.filter(([, s]) => s.status === "not-ready");
    checks.push({
      name: "cni status",
      ok: bad.length === 0,
      detail: states.map(([n, s]) =>
        `${n}: ${s.status}${s.error ? ` (${s.error})` : ""}`
      ).join("; "),
    });
  }
  return checks;
}

function statOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.statSync(path);
  } catch {
    return null;
  }
}

function missingPlugins(dirs: string[], plugins: string[]): string[] {
  return plugins.filter((p) =>
    !dirs.some((d) => statOrNull(`${d}/${p}`)?.isFile)
  );
}

/** The embedded network's plugins and every one a conflist names. */
async function namedPlugins(confDir: string): Promise<string[]> {
  const out = new Set<string>(REQUIRED_PLUGINS);
  try {
    for (const list of (await loadConfDir(confDir)).networks) {
      for (const p of list.plugins) {
        out.add(p.type);
        const ipam = (p.conf.ipam as { type?: unknown } | undefined)?.type;
        if (typeof ipam === "string" && ipam) out.add(ipam);
      }
    }
  } catch { /* the conflists check says why */ }
  return [...out];
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
