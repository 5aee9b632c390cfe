/**
 * Bad input changes nothing, not even the state dirs: the CLI checks every
 * argument before it opens the store (so this runs without root too).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runCli } from "../provider/_fixture.ts";

const CASES: [string[], RegExp][] = [
  [["add", "vm1", "--index", "0", "--mac", "zz"], /invalid MAC/],
  [["add", "vm1", "--index", "0", "--ip", "10.0.0.1/33"], /invalid IP/],
  [["add", "vm1", "--network", "bad/name"], /invalid network name/],
  [["add", "vm1", "--cpu", "0"], /--cpu must be/],
  [["remove", "vm1", "32"], /invalid NIC index 32/],
  [["delete", "ok", "../x"], /invalid VM id/],
  [["guest-config", "vm1", "--format", "yaml"], /--format must be/],
  [["gc", "--active-file", "/nonexistent/active"], /cannot read --active-file/],
];

Deno.test("cli: bad input exits 2 and creates no state dir", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vmnic-nothing-" });
  try {
    const rootDir = join(dir, "root");
    const runDir = join(dir, "run");
    for (const [args, says] of CASES) {
      const r = await runCli([
        ...args,
        "--json",
        `--root-dir=${rootDir}`,
        `--run-dir=${runDir}`,
      ]);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(JSON.parse(r.stderr).error.message, says, args.join(" "));
      assert.equal(r.stdout, "");
    }
    assert.deepEqual(
      [...Deno.readDirSync(dir)],
      [],
      "no root or run dir created",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: an empty settings flag is bad usage, not the current directory", async () => {
  const r = await runCli(["list", "--root-dir=", "--json"]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(
    JSON.parse(r.stderr).error.message,
    /--root-dir must not be empty/,
  );
});
