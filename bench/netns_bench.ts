/**
 * Named netns create+delete through FFI against iproute2 (`ip netns add` +
 * `ip netns del`, spawned) as the baseline, in the same run. Root only; run
 * it inside a throwaway netns (`unshare --net deno bench ...`).
 */
import { createNetns, deleteNetns, listNetns } from "../src/kernel/netns.ts";

const IS_ROOT = Deno.uid() === 0;
// Recognisable as a test leftover (`vmnict…`), unique to this run.
const PREFIX = `vmnictb${Deno.pid.toString(36)}-`;
let seq = 0;

async function ip(...args: string[]): Promise<void> {
  const { code, stderr } = await new Deno.Command("ip", {
    args,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (code !== 0) {
    throw new Error(
      `ip ${args.join(" ")}: ${new TextDecoder().decode(stderr)}`,
    );
  }
}

Deno.bench({
  name: "create+delete named netns (FFI)",
  group: "netns",
  ignore: !IS_ROOT,
  fn() {
    const name = PREFIX + seq++;
    try {
      createNetns(name);
    } finally {
      deleteNetns(name);
    }
  },
});

Deno.bench({
  name: "ip netns add+del",
  group: "netns",
  baseline: true,
  ignore: !IS_ROOT,
  async fn() {
    const name = PREFIX + seq++;
    try {
      await ip("netns", "add", name);
    } finally {
      await ip("netns", "del", name);
    }
  },
});

// Whatever an interrupted iteration left behind goes with the process.
globalThis.addEventListener("unload", () => {
  if (!IS_ROOT) return;
  for (const name of listNetns()) {
    if (name.startsWith(PREFIX)) deleteNetns(name);
  }
});
