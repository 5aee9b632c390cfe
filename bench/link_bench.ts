/**
 * Creating and deleting a veth pair: vmnic's rtnetlink client against
 * iproute2 spawned (`ip link add … type veth peer …` + `ip link del`), the
 * baseline. Both run in a scratch netns made for the run and removed at the
 * end, so the host's network is never touched. Needs root; skipped otherwise.
 *
 * Run: `deno bench --allow-ffi --allow-read --allow-write --allow-run
 * --allow-sys=uid bench/link_bench.ts`
 *
 * @module
 */
import { createVeth, deleteLink } from "../src/kernel/link.ts";
import { createNetns, deleteNetns, withNetns } from "../src/kernel/netns.ts";
import { NetlinkSocket } from "../src/netlink/socket.ts";

const IS_ROOT = Deno.uid() === 0;
const NETNS = `vmnicb${Deno.pid.toString(36)}${
  crypto.getRandomValues(new Uint32Array(1))[0].toString(36)
}`;
const V0 = "vbench0";
const V1 = "vbench1";

let sock: NetlinkSocket | undefined;
if (IS_ROOT) {
  const path = createNetns(NETNS);
  sock = withNetns(path, () => NetlinkSocket.open());
  globalThis.addEventListener("unload", () => {
    sock?.close();
    deleteNetns(NETNS);
  });
}

async function ip(...args: string[]): Promise<void> {
  const out = await new Deno.Command("ip", {
    args: ["-n", NETNS, ...args],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(
      `ip ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
}

Deno.bench({
  name: "ip link add veth + ip link del (spawned)",
  group: "veth",
  baseline: true,
  ignore: !IS_ROOT,
  async fn() {
    await ip("link", "add", V0, "type", "veth", "peer", "name", V1);
    await ip("link", "del", V0);
  },
});

Deno.bench({
  name: "createVeth + deleteLink (rtnetlink)",
  group: "veth",
  ignore: !IS_ROOT,
  fn() {
    createVeth(sock!, V0, V1);
    deleteLink(sock!, V0);
  },
});
