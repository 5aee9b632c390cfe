/**
 * contrib/vmnic.service: systemd accepts it, its command line is one the
 * CLI takes, and it keeps what vmnic needs (no mount sandboxing, the run
 * dir kept across restarts, SIGTERM to the daemon only).
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { GLOBAL_OPTIONS } from "../../src/cli/args.ts";
import { COMMANDS } from "../../src/cli/table.ts";
import { REPO_ROOT } from "../support/cli.ts";
import { run } from "../support/harness.ts";

const UNIT = join(REPO_ROOT, "contrib/vmnic.service");

/** `Key=value` lines of the unit (the last one of a key wins, as systemd does). */
function directives(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (m) out.set(m[1], m[2]);
  }
  return out;
}

Deno.test("the unit's ExecStart is `vmnic serve` with options serve takes", async () => {
  const unit = directives(await Deno.readTextFile(UNIT));
  const [bin, command, ...args] = unit.get("ExecStart")!.split(/\s+/);
  assert.equal(bin, "/usr/local/bin/vmnic");
  assert.equal(command, "serve");
  const serve = (await COMMANDS.serve.load()).default;
  const known = new Set([
    ...Object.keys(GLOBAL_OPTIONS),
    ...Object.keys(serve.options ?? {}),
  ]);
  for (const a of args.filter((a) => a.startsWith("--"))) {
    assert.ok(known.has(a.slice(2).split("=")[0]), `unknown option ${a}`);
  }
});

Deno.test("the unit keeps netns mounts visible and the run dir across restarts", async () => {
  const unit = directives(await Deno.readTextFile(UNIT));
  // Any of these gives the service its own mount namespace: the netns it
  // bind-mounts would be invisible to everyone else.
  for (
    const k of [
      "ProtectSystem",
      "PrivateTmp",
      "PrivateMounts",
      "ProtectHome",
      "ReadWritePaths",
      "TemporaryFileSystem",
      "MountFlags",
    ]
  ) {
    assert.ok(!unit.has(k), `${k}= would hide the netns mounts`);
  }
  assert.equal(unit.get("RuntimeDirectory"), "vmnic");
  assert.equal(unit.get("RuntimeDirectoryPreserve"), "yes");
  assert.equal(unit.get("KillMode"), "mixed");
});

Deno.test({
  name: "systemd-analyze verify accepts the unit",
  ignore: !(await hasSystemdAnalyze()),
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      // The binary is not installed here: verify checks it exists.
      const text = (await Deno.readTextFile(UNIT)).replaceAll(
        "/usr/local/bin/vmnic",
        "/bin/true",
      );
      const copy = join(dir, "vmnic.service");
      await Deno.writeTextFile(copy, text);
      const r = await run("systemd-analyze", ["verify", copy]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr.trim(), "", "no warnings");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

async function hasSystemdAnalyze(): Promise<boolean> {
  try {
    await Deno.stat("/usr/bin/systemd-analyze");
    return true;
  } catch {
    return false;
  }
}
