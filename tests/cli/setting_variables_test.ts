import assert from "node:assert/strict";
import { checkSettingVariables, UsageError } from "../../src/cli/args.ts";

/** The error's suggestion for `name`, or null when it passes. */
function verdict(name: string): string | null {
  try {
    checkSettingVariables([name], "add");
    return null;
  } catch (e) {
    assert.ok(e instanceof UsageError, String(e));
    assert.equal(e.command, "add");
    return e.message.match(/did you mean (.*)\?/)?.[1] ?? e.message;
  }
}

Deno.test("a misspelt setting variable is refused, naming the setting meant", () => {
  const cases: [string, string][] = [
    ["VMNIC_ROOT", "VMNIC_ROOT_DIR"], // a word short
    ["VMNIC_ROOTDIR", "VMNIC_ROOT_DIR"], // no underscore
    ["VMNIC_ROOT_DIRS", "VMNIC_ROOT_DIR"],
    ["VMNIC_RUNDIR", "VMNIC_RUN_DIR"],
    ["VMNIC_CNI_CONF", "VMNIC_CNI_CONF_DIR"],
    ["VMNIC_CNI_BIN_DIRS", "VMNIC_CNI_BIN_DIR"],
    ["VMNIC_NETNS", "VMNIC_NETNS_DIR or VMNIC_NETNS_PREFIX"],
    ["VMNIC_NETNS_PERFIX", "VMNIC_NETNS_PREFIX"], // two letters swapped
    ["VMNIC_HOOK_DIR", "VMNIC_HOOKS_DIR"],
    ["VMNIC_POLICY", "VMNIC_POLICY_FILE"],
    ["VMNIC_PLUGIN", "VMNIC_PLUGIN_TIMEOUT"],
    ["VMNIC_SOCK", "VMNIC_SOCKET"],
    ["VMNIC_Wait", "VMNIC_WAIT"], // the case
    ["VMNIC_WAITS", "VMNIC_WAIT"],
  ];
  for (const [name, meant] of cases) assert.equal(verdict(name), meant, name);
});

Deno.test("settings, other programs' variables and hooks' own VMNIC_* pass", () => {
  for (
    const name of [
      "VMNIC_ROOT_DIR",
      "VMNIC_RUN_DIR",
      "VMNIC_NETNS_PREFIX",
      "VMNIC_SOCKET",
      "VMNIC_WAIT",
      "VMNIC_PLUGIN_TIMEOUT",
      "VMNIC_AUDIT_LOG", // the example hooks' own
      "VMNIC_DENY_POLICY_FILE",
      "VMNIC_FAULT_POINT", // the tests'
      "VMNIC_E2E_ACCEL",
      "VMNIC_NET",
      "VMNIC_TIMEOUT",
      "VMNIC_EXIT",
      "TRACEPARENT",
      "ROOT_DIR",
      "vmnic_root", // not VMNIC_: not the CLI's (nor sent to the daemon)
    ]
  ) {
    assert.equal(verdict(name), null, name);
  }
});

Deno.test("the error says what to do and changes nothing else", () => {
  assert.throws(
    () => checkSettingVariables(["HOME", "VMNIC_AUDIT_LOG", "VMNIC_ROOT"]),
    {
      name: "UsageError",
      message:
        "VMNIC_ROOT is not a vmnic setting; did you mean VMNIC_ROOT_DIR? " +
        "Rename or unset it: vmnic would use the setting's default " +
        "(the settings and their variables: vmnic --help)",
    },
  );
});
