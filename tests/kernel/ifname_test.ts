import assert from "node:assert/strict";
import { validateIfName } from "../../src/kernel/ifname.ts";
import { InvalidArgumentError } from "../../src/sys/errors.ts";

Deno.test("validateIfName accepts names the kernel accepts", () => {
  for (
    const name of ["eth0", "tap0", "a", "x".repeat(15), "vmnic-br.10", "é"]
  ) {
    validateIfName(name);
  }
});

Deno.test("validateIfName rejects names the kernel refuses", () => {
  const bad = [
    "",
    "x".repeat(16), // IFNAMSIZ includes the NUL
    "é".repeat(8), // 8 characters but 16 bytes
    ".",
    "..",
    "a/b",
    "eth0:1",
    "has space",
    "tab\there",
    "new\nline",
    "nul\0",
    "tap%d", // would be a kernel name template
  ];
  for (const name of bad) {
    assert.throws(
      () => validateIfName(name),
      (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError, `${name}: ${err}`);
        assert.equal(err.object, name);
        return true;
      },
      JSON.stringify(name),
    );
  }
});
