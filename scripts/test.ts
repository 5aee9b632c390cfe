/**
 * Runs vmnic's test suite (`deno task test [deno test args]`).
 *
 * As root, the whole run happens inside a throwaway network namespace
 * (`unshare --net`): the CNI bridges and gateways the tests make live there
 * and vanish with it, so nothing touches this machine's real network. The
 * named per-VM namespaces the tests create carry a unique prefix per run and
 * are removed by the tests themselves. Without root, the root-only tests skip
 * and say why.
 *
 * @module
 */

const PERMISSIONS = [
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-run",
  "--allow-env",
  "--allow-sys",
];

const deno = Deno.execPath();
const args = ["test", ...PERMISSIONS, ...Deno.args];
const isolate = Deno.uid() === 0 && await hasUnshare();
const cmd = isolate
  ? new Deno.Command("unshare", { args: ["--net", "--", deno, ...args] })
  : new Deno.Command(deno, { args });
if (!isolate) {
  console.error(
    "vmnic tests: not root (or no unshare): root-only tests will be skipped",
  );
}
const { code } = await cmd.spawn().status;
Deno.exit(code);

async function hasUnshare(): Promise<boolean> {
  try {
    const { success } = await new Deno.Command("unshare", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
}
