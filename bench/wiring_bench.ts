/**
 * One NIC's data path made and torn down: a TAP, an ingress qdisc on it and
 * on the veth, a redirect filter each way; then the qdiscs and the TAP
 * removed. vmnic's FFI/rtnetlink path against the same done by spawning
 * iproute2 (`ip tuntap add`, `tc qdisc add`, `tc filter add`, …), the
 * baseline.
 *
 * Both run in a scratch netns made for the run and removed at the end
 * (iproute2 entering it with `-n`, as a shelled-out provider would have to),
 * so the host's network is never touched. Needs root; skipped otherwise.
 *
 * Run: `unshare --net deno bench --allow-ffi --allow-read --allow-write
 * --allow-run --allow-sys=uid bench/wiring_bench.ts`
 *
 * @module
 */
import { createVeth, deleteLink, getLinkByName } from "../src/kernel/link.ts";
import {
  addIngressQdisc,
  addRedirectFilter,
  deleteIngressQdisc,
} from "../src/kernel/tc.ts";
import { createNetns, deleteNetns, withNetns } from "../src/kernel/netns.ts";
import { createTap } from "../src/kernel/tuntap.ts";
import { NetlinkSocket } from "../src/netlink/socket.ts";
import { unwireTap, wireTapToVeth } from "../src/wiring/tap_wiring.ts";

const IS_ROOT = Deno.uid() === 0;
const NETNS = `vmnicbw${Deno.pid.toString(36)}${
  crypto.getRandomValues(new Uint32Array(1))[0].toString(36)
}`;
const VETH = "bwveth0";
const PEER = "bwpeer0";

let netnsPath = "";
let sock: NetlinkSocket | undefined;
let vethIndex = 0;
if (IS_ROOT) {
  netnsPath = createNetns(NETNS);
  sock = withNetns(netnsPath, () => NetlinkSocket.open());
  createVeth(sock, VETH, PEER);
  vethIndex = getLinkByName(sock, VETH)!.index;
  globalThis.addEventListener("unload", () => {
    sock?.close();
    deleteNetns(NETNS);
  });
}

async function spawn(cmd: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, {
    args: ["-n", NETNS, ...args],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(
      `${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
}

Deno.bench({
  name: "ip tuntap + tc qdisc/filter add, then del (spawned)",
  group: "wiring",
  baseline: true,
  ignore: !IS_ROOT,
  async fn() {
    const tap = "bwtap0";
    await spawn("ip", "tuntap", "add", "dev", tap, "mode", "tap", "vnet_hdr");
    await spawn("tc", "qdisc", "add", "dev", VETH, "ingress");
    await spawn("tc", "qdisc", "add", "dev", tap, "ingress");
    for (const [from, to] of [[VETH, tap], [tap, VETH]]) {
      await spawn(
        "tc",
        ..."filter add dev FROM parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev TO"
          .replace("FROM", from).replace("TO", to).split(" "),
      );
    }
    await spawn("tc", "qdisc", "del", "dev", VETH, "ingress");
    await spawn("tc", "qdisc", "del", "dev", tap, "ingress");
    await spawn("ip", "link", "del", tap);
  },
});

/** Both ingress qdiscs and redirects via tc.ts, then the qdiscs deleted. */
function tcRoundTrip(tapIndex: number): void {
  addIngressQdisc(sock!, vethIndex);
  addIngressQdisc(sock!, tapIndex);
  addRedirectFilter(sock!, { ifindex: vethIndex, toIfindex: tapIndex });
  addRedirectFilter(sock!, { ifindex: tapIndex, toIfindex: vethIndex });
  deleteIngressQdisc(sock!, vethIndex);
  deleteIngressQdisc(sock!, tapIndex);
}

Deno.bench({
  name: "createTap + tc.ts qdisc/filter calls, then delete (rtnetlink)",
  group: "wiring",
  ignore: !IS_ROOT,
  fn() {
    const tap = "bwtap1";
    withNetns(netnsPath, () => createTap({ name: tap }));
    const tapIndex = getLinkByName(sock!, tap)!.index;
    tcRoundTrip(tapIndex);
    deleteLink(sock!, tap);
  },
});

Deno.bench({
  name: "createTap + wireTapToVeth, unwireTap + delete (rtnetlink)",
  group: "wiring",
  ignore: !IS_ROOT,
  fn() {
    const pair = { veth: VETH, tap: "bwtap2" };
    withNetns(netnsPath, () => createTap({ name: pair.tap }));
    wireTapToVeth(sock!, pair);
    unwireTap(sock!, pair);
    deleteLink(sock!, pair.tap);
  },
});

// The TAP's deletion (the kernel's netdev unregister, ~20 ms either way)
// dominates the group above; this group leaves a TAP in place and measures
// the traffic-control part alone.
const STANDING_TAP = "bwtap9";
let standingTapIndex = 0;
if (IS_ROOT) {
  withNetns(netnsPath, () => createTap({ name: STANDING_TAP }));
  standingTapIndex = getLinkByName(sock!, STANDING_TAP)!.index;
}

Deno.bench({
  name: "tc qdisc/filter add, qdisc del (spawned)",
  group: "tc only",
  baseline: true,
  ignore: !IS_ROOT,
  async fn() {
    const tap = STANDING_TAP;
    await spawn("tc", "qdisc", "add", "dev", VETH, "ingress");
    await spawn("tc", "qdisc", "add", "dev", tap, "ingress");
    for (const [from, to] of [[VETH, tap], [tap, VETH]]) {
      await spawn(
        "tc",
        ..."filter add dev FROM parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev TO"
          .replace("FROM", from).replace("TO", to).split(" "),
      );
    }
    await spawn("tc", "qdisc", "del", "dev", VETH, "ingress");
    await spawn("tc", "qdisc", "del", "dev", tap, "ingress");
  },
});

Deno.bench({
  name: "tc.ts qdisc/filter add, qdisc del (rtnetlink)",
  group: "tc only",
  ignore: !IS_ROOT,
  fn() {
    tcRoundTrip(standingTapIndex);
  },
});

Deno.bench({
  name: "wireTapToVeth + unwireTap (rtnetlink)",
  group: "tc only",
  ignore: !IS_ROOT,
  fn() {
    const pair = { veth: VETH, tap: STANDING_TAP };
    wireTapToVeth(sock!, pair);
    unwireTap(sock!, pair);
  },
});
