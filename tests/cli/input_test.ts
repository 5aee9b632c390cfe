/**
 * The CLI's input rules: every bad VM id, index, MAC, IP, flag or command
 * exits 2 and changes nothing (no netns, no record, the VM already there
 * untouched); lookups of what does not exist exit 3; `--help` works for
 * every command; with `--json` errors are JSON on stderr.
 */
import assert from "node:assert/strict";
import { rootTest } from "../support/harness.ts";
import { type CliResult, makeFixture } from "../provider/_fixture.ts";
import { COMMANDS } from "../../src/cli/table.ts";
import type { NicConfig } from "../../src/provider/types.ts";

/** The VM that exists during the test; bad input must not touch it. */
const GOOD = "good";

/** argv (after the fixture's flags), what it is, what the error must say. */
const BAD_INPUT: [string[], string, RegExp][] = [
  // VM ids
  [["add", "../x"], "VM id with ..", /invalid VM id "\.\.\/x"/],
  [["add", "a/b"], "VM id with /", /invalid VM id "a\/b"/],
  [["add", "--", "-x"], "VM id starting with -", /invalid VM id "-x"/],
  [["prepare", "--", "-x"], "VM id starting with - (prepare)", /invalid VM id/],
  [["add", "v".repeat(64)], "VM id of 64 chars", /invalid VM id "v{64}"/],
  [["add", ""], "empty VM id", /invalid VM id ""/],
  [["prepare", ""], "empty VM id (prepare)", /invalid VM id ""/],
  [["add", "a..b"], "VM id with .. inside", /invalid VM id "a\.\.b"/],
  [["delete", "../x"], "VM id with .. (delete)", /invalid VM id/],
  [["verify", "a/b"], "VM id with / (verify)", /invalid VM id/],
  [["list", "--vm", "../x"], "VM id with .. (list --vm)", /invalid VM id/],
  // indices
  [["add", GOOD, "--index", "32"], "index 32", /--index must be .*"32"/],
  [["add", GOOD, "--index=-1"], "index -1", /--index must be .*"-1"/],
  [["add", GOOD, "--index", "x"], "index x", /--index must be .*"x"/],
  [["remove", GOOD, "32"], "remove index 32", /invalid NIC index 32/],
  [["remove", GOOD, "--", "-1"], "remove index -1", /index must be .*"-1"/],
  [["remove", GOOD, "x"], "remove index x", /index must be .*"x"/],
  // MACs
  [
    ["add", GOOD, "--index", "5", "--mac", "01:00:5e:00:00:01"],
    "multicast MAC",
    /multicast/,
  ],
  [
    ["add", GOOD, "--index", "5", "--mac", "0a:58:zz:00:00:01"],
    "MAC non-hex",
    /invalid MAC/,
  ],
  [
    ["add", GOOD, "--index", "5", "--mac", "0a:58:00:00:01"],
    "MAC of 5 bytes",
    /invalid MAC/,
  ],
  [
    ["add", GOOD, "--mac", "0a:58:00:00:00:01"],
    "--mac without --index",
    /--index/,
  ],
  // IPs
  [
    ["add", GOOD, "--index", "5", "--ip", "999.1.1.1"],
    "IP 999.1.1.1",
    /invalid IP "999\.1\.1\.1"/,
  ],
  [
    ["add", GOOD, "--index", "5", "--ip", "10.0.0.1/33"],
    "IP prefix /33",
    /invalid IP "10\.0\.0\.1\/33"/,
  ],
  // numbers
  [["add", GOOD, "--cpu", "0"], "cpu 0", /--cpu must be/],
  [["add", GOOD, "--nics", "x"], "nics x", /--nics must be/],
  // flags and commands
  [["add", GOOD, "--bogus"], "unknown flag", /--bogus/],
  [["--bogus", "list"], "unknown flag before the command", /--bogus/],
  [["list", "--index", "1"], "flag of another command", /--index/],
  [["add"], "missing argument", /missing argument/],
  [["remove", GOOD], "remove without index", /missing argument/],
  [["inspect", "a", "b"], "extra argument", /unexpected argument "b"/],
  [["frobnicate", GOOD], "unknown command", /unknown command "frobnicate"/],
  [[], "no command", /command/],
  [
    ["guest-config", GOOD, "--format", "yaml"],
    "unknown guest-config format",
    /--format/,
  ],
  [["gc"], "gc without --active", /--active/],
  [
    ["add", GOOD, "--index", "1", "--nics", "2"],
    "--index with --nics",
    /--index names one NIC/,
  ],
  [["prepare", GOOD, "--force"], "remove's --force on prepare", /--force/],
  [["vms", "x"], "vms takes no argument", /unexpected argument "x"/],
  // the waits
  [
    ["list", "--wait", "x"],
    "--wait x",
    /--wait \(or VMNIC_WAIT\) must be a number of seconds/,
  ],
  [
    ["add", GOOD, "--plugin-timeout", "0"],
    "--plugin-timeout 0",
    /--plugin-timeout \(or VMNIC_PLUGIN_TIMEOUT\) must be a number of seconds/,
  ],
];

/** Asserts `r` failed with `code` and, given --json, a JSON error on stderr. */
function assertJsonError(r: CliResult, code: number, what: string): string {
  assert.equal(r.code, code, `${what}: exit ${r.code}\n${r.stderr}`);
  let parsed: { error?: { message?: unknown; type?: unknown } };
  try {
    parsed = JSON.parse(r.stderr);
  } catch {
    assert.fail(`${what}: stderr is not JSON: ${r.stderr}`);
  }
  assert.equal(typeof parsed.error?.message, "string", `${what}: ${r.stderr}`);
  assert.equal(typeof parsed.error?.type, "string", `${what}: ${r.stderr}`);
  return parsed.error!.message as string;
}

/** Runs `fn` over `items`, `width` at a time (each item is a process). */
async function inBatches<T, R>(
  items: T[],
  width: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += width) {
    out.push(...await Promise.all(items.slice(i, i + width).map(fn)));
  }
  return out;
}

rootTest("cli: bad input exits 2 and changes nothing", async () => {
  const fx = await makeFixture("in", { octet: 207 });
  try {
    const [good] = await fx.cliOk<NicConfig[]>(["add", GOOD]);
    const results = await inBatches(
      BAD_INPUT,
      8,
      async ([argv, what, says]) => {
        const r = await fx.cli(argv);
        return { r, what, says };
      },
    );
    for (const { r, what, says } of results) {
      assert.match(assertJsonError(r, 2, what), says, what);
    }

    // Nothing was created or changed.
    assert.deepEqual(await fx.netns(), [GOOD]);
    assert.deepEqual(await fx.cliOk(["list"]), [good]);
    assert.deepEqual(await fx.leasedIps(), [good.ips[0].address]);
    const v = await fx.cli(["verify", GOOD]);
    assert.equal(v.code, 0, v.stdout);
  } finally {
    await fx.cleanup();
  }
});

rootTest("cli: an unknown network exits 2 naming the known ones", async () => {
  const fx = await makeFixture("nw", { octet: 208 });
  try {
    for (const argv of [["add", "vm1", "--network", "nope"]]) {
      const r = await fx.cli(argv);
      const msg = assertJsonError(r, 2, argv.join(" "));
      assert.match(msg, /nope/);
      assert.ok(msg.includes(fx.network), `known names in: ${msg}`);
      const human = await fx.cli(argv, { json: false });
      assert.equal(human.code, 2);
      assert.ok(human.stderr.includes(fx.network), human.stderr);
    }
    assert.deepEqual(await fx.netns(), []);
    assert.deepEqual(await fx.cliOk(["list"]), []);
    assert.deepEqual(await fx.leasedIps(), []);
  } finally {
    await fx.cleanup();
  }
});

rootTest("cli: what does not exist exits 3", async () => {
  const fx = await makeFixture("nf", { octet: 209 });
  try {
    for (
      const argv of [
        ["inspect", "nope"],
        ["verify", "nope"],
        ["remove", "nope", "0"],
        ["recover", "nope"],
        ["quiesce", "nope"],
        ["guest-config", "nope", "--format", "cmdline"],
      ]
    ) {
      assertJsonError(await fx.cli(argv), 3, argv.join(" "));
    }
    // A VM this install has no trace of counts as deleted.
    assert.deepEqual(await fx.cliOk(["delete", "nope"]), {
      deleted: ["nope"],
      errors: [],
      warnings: [],
    });
    assert.deepEqual(await fx.netns(), []);
    assert.deepEqual(await fx.cliOk(["list"]), []);
    assert.deepEqual(await fx.cliOk(["vms"]), []);
  } finally {
    await fx.cleanup();
  }
});

rootTest("cli: --help of every command exits 0 with its usage", async () => {
  const fx = await makeFixture("hp", { octet: 210 });
  try {
    const names = Object.keys(COMMANDS);
    const results = await inBatches(names, 8, async (name) => ({
      name,
      r: await fx.cli([name, "--help"], { json: false }),
    }));
    for (const { name, r } of results) {
      assert.equal(r.code, 0, `${name} --help: ${r.stderr}`);
      assert.match(r.stdout, /Usage:/, `${name} --help`);
      assert.ok(r.stdout.includes(`vmnic ${name}`), `${name} --help`);
    }
    const top = await fx.cli(["--help"], { json: false });
    assert.equal(top.code, 0);
    assert.match(top.stdout, /Usage:/);
    for (const name of names) assert.ok(top.stdout.includes(name), name);
    assert.deepEqual(await fx.netns(), []);
  } finally {
    await fx.cleanup();
  }
});
