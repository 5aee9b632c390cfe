import assert from "node:assert/strict";
import {
  checkSettingVariables,
  parse,
  UsageError,
} from "../../src/cli/args.ts";
import {
  misspeltSettings,
  SETTING_VARIABLES,
} from "../../src/cli/setting_variables.ts";

/** What the check makes of `name`: refused (sure), warned, or passed. */
function verdict(name: string): string {
  const [m, ...more] = misspeltSettings([name]);
  assert.equal(more.length, 0);
  if (!m) return "passes";
  const meant = m.meant.map((f) => SETTING_VARIABLES[f]).join(" or ");
  return `${m.sure ? "refused" : "warned"}: ${meant}`;
}

Deno.test("a slip in a setting's variable is refused, naming the setting", () => {
  const cases: [string, string][] = [
    ["VMNIC_ROOTDIR", "VMNIC_ROOT_DIR"], // underscores
    ["VMNIC_Root_Dir", "VMNIC_ROOT_DIR"], // case
    ["VMNIC_Wait", "VMNIC_WAIT"],
    ["VMNIC_RUNDIR", "VMNIC_RUN_DIR"],
    ["VMNIC_ROOT_DIRS", "VMNIC_ROOT_DIR"], // a letter added
    ["VMNIC_HOOK_DIR", "VMNIC_HOOKS_DIR"], // a letter dropped
    ["VMNIC_NETNS_PERFIX", "VMNIC_NETNS_PREFIX"], // two letters swapped
    ["VMNIC_SCOKET", "VMNIC_SOCKET"],
    ["VMNIC_PLUGIN_TIMOUT", "VMNIC_PLUGIN_TIMEOUT"],
    ["VMNIC_CNI_BIN_DIRS", "VMNIC_CNI_BIN_DIR"],
  ];
  for (const [name, meant] of cases) {
    assert.equal(verdict(name), `refused: ${meant}`, name);
  }
});

Deno.test("a word short of a setting is only warned about: it may be a hook's", () => {
  assert.equal(verdict("VMNIC_ROOT"), "warned: VMNIC_ROOT_DIR");
  assert.equal(verdict("VMNIC_RUN"), "warned: VMNIC_RUN_DIR");
  assert.equal(
    verdict("VMNIC_NETNS"),
    "warned: VMNIC_NETNS_DIR or VMNIC_NETNS_PREFIX",
  );
  assert.equal(verdict("VMNIC_CNI_CONF"), "warned: VMNIC_CNI_CONF_DIR");
  assert.equal(verdict("VMNIC_POLICY"), "warned: VMNIC_POLICY_FILE");
});

Deno.test("settings, hooks' and other tools' VMNIC_* variables pass", () => {
  for (
    const name of [
      ...Object.values(SETTING_VARIABLES),
      "VMNIC_AUDIT_LOG", // the example hooks' own
      "VMNIC_DENY_POLICY_FILE",
      "VMNIC_FAULT_POINT", // the tests'
      "VMNIC_E2E_ACCEL",
      "VMNIC_BAD_INPUT_SEED",
      // Names a hook or a tool may well use (found by review).
      "VMNIC_SECRET",
      "VMNIC_BUCKET",
      "VMNIC_TICKET",
      "VMNIC_OUT_DIR",
      "VMNIC_RUN_ID",
      "VMNIC_BOOT_DIR",
      "VMNIC_HOST_DIR",
      "VMNIC_ROOT_DISK",
      "VMNIC_ROOTFS_DIR",
      "VMNIC_NETNS_ID",
      "VMNIC_POLICY_RULE",
      "VMNIC_CNI", // two words short
      "VMNIC_NET",
      "VMNIC_TIMEOUT",
      "VMNIC_WAITS", // a short name takes no slip but case
      "TRACEPARENT",
      "ROOT_DIR",
      "vmnic_root_dir", // not VMNIC_: not the CLI's, nor sent to a daemon
    ]
  ) {
    assert.equal(verdict(name), "passes", name);
  }
});

Deno.test("the CLI's check: slips refused together; a warning only when the setting is not given", () => {
  const none = () => undefined;
  assert.throws(
    () =>
      checkSettingVariables(
        parse(["list"], "list", {}, [0, 0]),
        ["VMNIC_AUDIT_LOG", "VMNIC_ROOTDIR", "VMNIC_SOKET"],
        none,
      ),
    (e) =>
      e instanceof UsageError &&
      e.message ===
        "VMNIC_ROOTDIR is not a vmnic setting; did you mean VMNIC_ROOT_DIR? " +
          "VMNIC_SOKET is not a vmnic setting; did you mean VMNIC_SOCKET? " +
          "Rename or unset it: vmnic does not read it (the settings: vmnic --help)",
  );
  assert.deepEqual(
    checkSettingVariables(
      parse(["list"], "list", {}, [0, 0]),
      ["VMNIC_ROOT"],
      none,
    ),
    [
      "VMNIC_ROOT is not a vmnic setting (did you mean VMNIC_ROOT_DIR?): vmnic uses the setting's default",
    ],
  );
  // Given by flag or by its own variable, the setting is not defaulted.
  assert.deepEqual(
    checkSettingVariables(
      parse(["list", "--root-dir=/x"], "list", {}, [0, 0]),
      ["VMNIC_ROOT"],
      none,
    ),
    [],
  );
  assert.deepEqual(
    checkSettingVariables(
      parse(["list"], "list", {}, [0, 0]),
      ["VMNIC_ROOT", "VMNIC_ROOT_DIR"],
      (k) => k === "VMNIC_ROOT_DIR" ? "/x" : undefined,
    ),
    [],
  );
});
