/**
 * Builds the small guest the end-to-end tests boot behind a vmnic TAP:
 * Debian's stock kernel (`linux-image-amd64`) and an initramfs of
 * `busybox-static`, the kernel's virtio modules and `scripts/guest/init.sh`.
 * Nothing binary lives in the repository: the guest is assembled from
 * Debian packages into a cache directory outside it, and rebuilt only when
 * its inputs change (kernel version, busybox version, init script).
 * With `--with-iperf3` (option `withIperf3`) the guest also carries Debian's
 * `iperf3` and its shared libraries, for bench/guest_datapath.ts.
 *
 * ```sh
 * deno run --allow-read --allow-write --allow-run --allow-env scripts/build_guest.ts [--with-iperf3] [cacheDir]
 * ```
 *
 * Prints the built guest as JSON. The cache dir is `[cacheDir]`, else
 * `$VMNIC_E2E_CACHE`, else `/var/cache/vmnic-e2e`.
 *
 * @module
 */
import { basename, dirname, join } from "node:path";

/** Where the guest is cached when neither an argument nor the environment says. */
export const DEFAULT_CACHE_DIR = "/var/cache/vmnic-e2e";

/** Debian packages the guest is built from, and QEMU that boots it. */
export const GUEST_PACKAGES = [
  "qemu-system-x86",
  "linux-image-amd64",
  "busybox-static",
  "cpio",
];

/** Debian's iperf3 package and its binary (`withIperf3`). */
const IPERF3_PACKAGE = "iperf3";
const IPERF3_BINARY = "/usr/bin/iperf3";

/** Modules the guest needs for a virtio NIC (those the kernel has built in are skipped). */
const ROOT_MODULES = ["virtio_pci", "virtio_mmio", "virtio_net"];

/** The init script, read from beside this file. */
const INIT_SCRIPT = new URL("./guest/init.sh", import.meta.url);

/** A built guest: what QEMU's `-kernel` and `-initrd` take. */
export interface GuestImage {
  kernel: string;
  initrd: string;
  kernelVersion: string;
  busyboxVersion: string;
  /** Module files in the initramfs, in the order init loads them. */
  modules: string[];
  /** iperf3's package version when the guest carries `/bin/iperf3`. */
  iperf3Version?: string;
}

/** A guest input that is missing (a package not installed, a module not found). */
export class GuestBuildError extends Error {
  constructor(readonly step: string, reason: string) {
    super(`build guest: ${step}: ${reason}`);
    this.name = "GuestBuildError";
  }
}

/** Options of {@linkcode buildGuest}. */
export interface BuildOptions {
  /** Cache dir (default `$VMNIC_E2E_CACHE` or {@linkcode DEFAULT_CACHE_DIR}). */
  cacheDir?: string;
  /** Install missing packages with apt-get (needs network; off inside the test netns). */
  install?: boolean;
  /** Progress messages (stderr by default). */
  log?: (msg: string) => void;
  /** Also put `/bin/iperf3` and its shared libraries in the initramfs. */
  withIperf3?: boolean;
}

/** The cache dir the options, the environment or the default name. */
export function cacheDirOf(cacheDir?: string): string {
  return cacheDir ?? Deno.env.get("VMNIC_E2E_CACHE") ?? DEFAULT_CACHE_DIR;
}

/**
 * Returns the cached guest for the installed kernel and busybox, building it
 * first when the cache has none for these inputs.
 */
export async function buildGuest(opts: BuildOptions = {}): Promise<GuestImage> {
  const log = opts.log ?? ((m: string) => console.error(`build_guest: ${m}`));
  const packages = opts.withIperf3
    ? [...GUEST_PACKAGES, IPERF3_PACKAGE]
    : GUEST_PACKAGES;
  if (opts.install) await ensurePackages(packages, log);
  const kernelVersion = await newestKernel();
  const busybox = await findBusybox();
  const busyboxVersion = await packageVersion("busybox-static") ??
    (await output(busybox, ["--help"])).split("\n")[0].trim();
  const iperf3Version = opts.withIperf3
    ? await packageVersion(IPERF3_PACKAGE)
    : undefined;
  if (iperf3Version === null) {
    throw new GuestBuildError(
      "iperf3",
      "package iperf3 not installed (scripts/build_guest.ts --with-iperf3 installs it)",
    );
  }
  const init = await Deno.readTextFile(INIT_SCRIPT);
  const key = await cacheKey(
    kernelVersion,
    busyboxVersion,
    init,
    iperf3Version,
  );
  const dir = join(cacheDirOf(opts.cacheDir), key);
  const cached = await readManifest(dir);
  if (cached) return cached;

  log(
    `building guest ${key} (kernel ${kernelVersion}, busybox ${busyboxVersion})`,
  );
  const parent = cacheDirOf(opts.cacheDir);
  await Deno.mkdir(parent, { recursive: true });
  const work = await Deno.makeTempDir({ dir: parent, prefix: ".build-" });
  try {
    const root = join(work, "root");
    for (const d of ["bin", "dev", "proc", "sys", "tmp", "lib/modules"]) {
      await Deno.mkdir(join(root, d), { recursive: true });
    }
    await Deno.copyFile(busybox, join(root, "bin/busybox"));
    await Deno.chmod(join(root, "bin/busybox"), 0o755);
    await Deno.writeTextFile(join(root, "init"), init, { mode: 0o755 });
    await Deno.chmod(join(root, "init"), 0o755);
    const modules = await copyModules(kernelVersion, join(root, "lib/modules"));
    if (iperf3Version) await copyIperf3(root);
    await Deno.writeTextFile(
      join(root, "lib/modules/load-order"),
      modules.map((m) => `${m}\n`).join(""),
    );
    const image: GuestImage = {
      kernel: join(dir, "vmlinuz"),
      initrd: join(dir, "initramfs.cpio.gz"),
      kernelVersion,
      busyboxVersion,
      modules,
      ...(iperf3Version ? { iperf3Version } : {}),
    };
    const out = join(work, "out");
    await Deno.mkdir(out);
    await Deno.copyFile(
      `/boot/vmlinuz-${kernelVersion}`,
      join(out, "vmlinuz"),
    );
    await packInitramfs(root, join(out, "initramfs.cpio.gz"));
    await Deno.writeTextFile(
      join(out, "manifest.json"),
      JSON.stringify(image, null, 2) + "\n",
    );
    try {
      // Atomic publish: a reader sees the whole guest or none.
      await Deno.rename(out, dir);
    } catch (e) {
      // Another build published the same inputs first: use that one.
      const other = await readManifest(dir);
      if (!other) throw e;
      return other;
    }
    log(`guest ready in ${dir}`);
    return image;
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

/** The manifest of a published guest, or `null` when absent or incomplete. */
async function readManifest(dir: string): Promise<GuestImage | null> {
  try {
    const image = JSON.parse(
      await Deno.readTextFile(join(dir, "manifest.json")),
    ) as GuestImage;
    await Deno.stat(image.kernel);
    await Deno.stat(image.initrd);
    return image;
  } catch {
    return null;
  }
}

/**
 * A file-name-safe key of the inputs: versions plus a hash of the init
 * script (and iperf3's version when the guest carries it; without iperf3
 * the key is what it was before that option existed).
 */
async function cacheKey(
  kernelVersion: string,
  busyboxVersion: string,
  init: string,
  iperf3Version?: string,
): Promise<string> {
  const inputs = [init, ROOT_MODULES, kernelVersion, busyboxVersion];
  if (iperf3Version) inputs.push(`iperf3 ${iperf3Version}`);
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(JSON.stringify(inputs)),
  );
  const hash = [...new Uint8Array(digest).slice(0, 6)]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  const safe = (s: string) => s.replace(/[^A-Za-z0-9.+_-]/g, "_");
  const iperf = iperf3Version ? `_iperf3-${safe(iperf3Version)}` : "";
  return `${safe(kernelVersion)}_bb${safe(busyboxVersion)}${iperf}_${hash}`;
}

/**
 * Copies iperf3 to `/bin/iperf3` in `root`, and every shared library `ldd`
 * names (the dynamic loader too) to its own path there: busybox is static,
 * so the initramfs has no libc of its own.
 */
async function copyIperf3(root: string): Promise<void> {
  const ldd = await new Deno.Command("ldd", {
    args: [IPERF3_BINARY],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(ldd.stdout);
  if (!ldd.success) {
    throw new GuestBuildError(
      "iperf3",
      `ldd ${IPERF3_BINARY}: ${new TextDecoder().decode(ldd.stderr)}`,
    );
  }
  // `libc.so.6 => /lib/.../libc.so.6 (0x…)` and `/lib64/ld-linux-x86-64.so.2 (0x…)`;
  // linux-vdso has no file.
  const libs = [...text.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x[0-9a-f]+\)/g)]
    .map((m) => m[1]);
  if (!libs.some((l) => l.includes("ld-linux"))) {
    throw new GuestBuildError(
      "iperf3",
      `no dynamic loader in ldd output:\n${text}`,
    );
  }
  for (const lib of libs) {
    const dest = join(root, lib);
    await Deno.mkdir(dirname(dest), { recursive: true });
    // copyFile follows symlinks: the guest gets the library's content.
    await Deno.copyFile(lib, dest);
    await Deno.chmod(dest, 0o755);
  }
  await Deno.copyFile(IPERF3_BINARY, join(root, "bin/iperf3"));
  await Deno.chmod(join(root, "bin/iperf3"), 0o755);
}

/** The newest kernel in /boot that has its modules installed. */
async function newestKernel(): Promise<string> {
  const versions: string[] = [];
  try {
    for await (const e of Deno.readDir("/boot")) {
      const m = /^vmlinuz-(.+)$/.exec(e.name);
      if (m && await exists(`/lib/modules/${m[1]}/modules.dep`)) {
        versions.push(m[1]);
      }
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (!versions.length) {
    throw new GuestBuildError(
      "kernel",
      "no /boot/vmlinuz-* with modules (install linux-image-amd64)",
    );
  }
  return versions.sort(compareVersions).at(-1)!;
}

/** Orders `6.1.0-9-amd64` before `6.1.0-10-amd64`. */
function compareVersions(a: string, b: string): number {
  return a.localeCompare(b, "en", { numeric: true });
}

/** busybox-static's binary. */
async function findBusybox(): Promise<string> {
  for (const p of ["/bin/busybox", "/usr/bin/busybox"]) {
    if (!await exists(p)) continue;
    // A dynamic busybox would need its libraries in the initramfs.
    const head = await Deno.open(p).then(async (f) => {
      try {
        const buf = new Uint8Array(1 << 16);
        const n = await f.read(buf) ?? 0;
        return new TextDecoder("latin1").decode(buf.subarray(0, n));
      } finally {
        f.close();
      }
    });
    if (!head.includes("ld-linux")) return p;
  }
  throw new GuestBuildError(
    "busybox",
    "no static busybox (install busybox-static)",
  );
}

/**
 * Copies the virtio modules and everything they depend on (per
 * modules.dep) into `dest`, flat and uncompressed, and returns their file
 * names in load order (dependencies first). Modules built into the kernel
 * are skipped.
 */
async function copyModules(
  kernelVersion: string,
  dest: string,
): Promise<string[]> {
  const base = `/lib/modules/${kernelVersion}`;
  const deps = new Map<string, string[]>();
  for (
    const line of (await Deno.readTextFile(`${base}/modules.dep`)).split("\n")
  ) {
    const [mod, rest] = line.split(":");
    if (!rest && rest !== "") continue;
    deps.set(mod, rest.trim().split(/\s+/).filter(Boolean));
  }
  const builtin = new Set(
    (await Deno.readTextFile(`${base}/modules.builtin`).catch(() => ""))
      .split("\n").filter(Boolean).map(moduleName),
  );
  const byName = new Map([...deps.keys()].map((p) => [moduleName(p), p]));
  const order: string[] = [];
  const visit = (path: string) => {
    if (order.includes(path)) return;
    for (const d of deps.get(path) ?? []) visit(d);
    order.push(path);
  };
  for (const name of ROOT_MODULES) {
    if (builtin.has(name)) continue;
    const path = byName.get(name);
    if (!path) {
      throw new GuestBuildError(
        "modules",
        `${name} is neither a module nor built into ${kernelVersion}`,
      );
    }
    visit(path);
  }
  const files: string[] = [];
  for (const rel of order) {
    const file = `${moduleName(rel)}.ko`;
    const data = await Deno.readFile(`${base}/${rel}`);
    // busybox insmod loads plain .ko files only.
    await Deno.writeFile(join(dest, file), await decompress(rel, data));
    files.push(file);
  }
  return files;
}

/** `kernel/drivers/net/virtio_net.ko.xz` -> `virtio_net` (dashes as underscores). */
function moduleName(path: string): string {
  return basename(path).replace(/\.ko(\.\w+)?$/, "").replaceAll("-", "_");
}

/** A module file's content, decompressed by the tool its extension names. */
async function decompress(path: string, data: Uint8Array): Promise<Uint8Array> {
  const tool = path.endsWith(".xz")
    ? ["xz", "-dc"]
    : path.endsWith(".zst")
    ? ["zstd", "-dc"]
    : path.endsWith(".gz")
    ? ["gzip", "-dc"]
    : null;
  if (!tool) return data;
  const child = new Deno.Command(tool[0], {
    args: tool.slice(1),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(data);
  await w.close();
  const out = await child.output();
  if (!out.success) {
    throw new GuestBuildError(
      "modules",
      `${tool[0]} ${path}: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
  return out.stdout;
}

/** Packs `root` as a gzip'd newc cpio archive (`cpio -o -H newc`), owned by root. */
async function packInitramfs(root: string, dest: string): Promise<void> {
  const paths: string[] = [];
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(join(root, rel))) {
      const p = rel === "." ? e.name : `${rel}/${e.name}`;
      paths.push(p);
      if (e.isDirectory) await walk(p);
    }
  };
  await walk(".");
  paths.sort();
  const child = new Deno.Command("cpio", {
    args: ["-o", "-H", "newc", "-R", "0:0", "--quiet"],
    cwd: root,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const file = await Deno.open(dest, { write: true, create: true });
  const written = child.stdout
    .pipeThrough(new CompressionStream("gzip"))
    .pipeTo(file.writable);
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(paths.map((p) => `${p}\n`).join("")));
  await w.close();
  const stderr = new Response(child.stderr).text();
  const [status] = await Promise.all([child.status, written]);
  if (!status.success) {
    throw new GuestBuildError("initramfs", `cpio failed: ${await stderr}`);
  }
}

/** The installed version of a Debian package, or `null`. */
async function packageVersion(pkg: string): Promise<string | null> {
  try {
    const out = await new Deno.Command("dpkg-query", {
      args: ["-W", "-f=${Status}\t${Version}", pkg],
      stdout: "piped",
      stderr: "null",
    }).output();
    const [status, version] = new TextDecoder().decode(out.stdout).split("\t");
    return out.success && status.includes("install ok installed") && version
      ? version
      : null;
  } catch {
    return null; // no dpkg
  }
}

/** Installs the missing ones of `pkgs` with apt-get, without recommends. */
export async function ensurePackages(
  pkgs: string[],
  log: (msg: string) => void,
): Promise<void> {
  const missing: string[] = [];
  for (const p of pkgs) if (await packageVersion(p) === null) missing.push(p);
  if (!missing.length) return;
  log(`installing ${missing.join(" ")} (apt-get)`);
  // INITRD=No: the guest brings its own initramfs; skip update-initramfs.
  const env = { DEBIAN_FRONTEND: "noninteractive", INITRD: "No" };
  for (
    const args of [
      ["update", "-qq"],
      ["install", "-y", "-qq", "--no-install-recommends", ...missing],
    ]
  ) {
    // apt's chatter goes to stderr: stdout carries the JSON result.
    const child = new Deno.Command("apt-get", {
      args,
      env,
      stdin: "null",
      stdout: "piped",
    }).spawn();
    await child.stdout.pipeTo(Deno.stderr.writable, { preventClose: true });
    const { success } = await child.status;
    if (!success) {
      throw new GuestBuildError("packages", `apt-get ${args[0]} failed`);
    }
  }
}

async function output(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, {
    args,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return dec.decode(out.stdout) + dec.decode(out.stderr);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

if (import.meta.main) {
  try {
    const withIperf3 = Deno.args.includes("--with-iperf3");
    const cacheDir = Deno.args.find((a) => !a.startsWith("--"));
    const image = await buildGuest({ cacheDir, install: true, withIperf3 });
    console.log(JSON.stringify(image, null, 2));
  } catch (e) {
    if (!(e instanceof GuestBuildError)) throw e;
    console.error(e.message);
    Deno.exit(1);
  }
}
