/**
 * Helpers shared by the CNI runtime tests: temp dirs, unique short link
 * names, fake plugins, host-local's reservation files, conflist builders.
 *
 * @module
 */
import { join } from "node:path";
import { run } from "../support/harness.ts";

/** Where Debian installs the real plugins. */
export const REAL_BIN = "/usr/lib/cni";

/** A link name unique to this run, at most 15 characters (IFNAMSIZ - 1). */
export function linkName(tag: string): string {
  const rand = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
  return `vt${tag}${rand}`.slice(0, 15);
}

/** Runs `fn` with a fresh temp dir, removed afterwards. */
export async function withTempDir<T>(
  fn: (dir: string) => Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "vmnic-cni-test-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Writes an executable shell script plugin `name` into `dir`. */
export async function writeFakePlugin(
  dir: string,
  name: string,
  body: string,
): Promise<string> {
  const path = join(dir, name);
  await Deno.writeTextFile(path, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  await Deno.chmod(path, 0o755);
  return path;
}

/** The VERSION answer fake plugins give unless told otherwise. */
export const FAKE_VERSIONS =
  `{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}`;

/** IP addresses host-local has reserved for `network` in `dataDir`. */
export async function reservedIps(
  dataDir: string,
  network: string,
): Promise<string[]> {
  const ips: string[] = [];
  try {
    for await (const e of Deno.readDir(join(dataDir, network))) {
      if (e.name === "lock" || e.name.startsWith("last_reserved_ip")) continue;
      ips.push(e.name);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return ips.sort();
}

/** A bridge + host-local plugin pair for a conflist. */
export function bridgePlugins(
  bridge: string,
  dataDir: string,
  ranges: { subnet: string }[][],
  extra: Record<string, unknown> = {},
): Record<string, unknown>[] {
  return [{
    type: "bridge",
    bridge,
    isGateway: true,
    ipMasq: false,
    hairpinMode: true,
    ...extra,
    ipam: { type: "host-local", ranges, dataDir },
  }];
}

/** Deletes a link in the test's host netns, ignoring "not found". */
export async function deleteLink(name: string): Promise<void> {
  await run("ip", ["link", "del", name]);
}

/** True when `cmd args` exits 0 (a capability probe). */
export async function probe(cmd: string, ...args: string[]): Promise<boolean> {
  try {
    return (await run(cmd, args)).code === 0;
  } catch {
    return false;
  }
}
