/**
 * The end-to-end proof of the data path: a "host" netns and a "vm" netns
 * joined by a veth pair; in the vm netns a TAP wired to the veth with
 * wireTapToVeth, and a tiny userspace guest (tap_echo.ts) on the TAP. A ping
 * from the host reaches the guest only through vethA -> vethB -> TC redirect
 * -> TAP and back (vethB has no IP), and stops when the wiring is removed.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { getLinkByName, setLinkUp } from "../../src/kernel/link.ts";
import { withNetns } from "../../src/kernel/netns.ts";
import { createTap } from "../../src/kernel/tuntap.ts";
import { NetlinkSocket } from "../../src/netlink/socket.ts";
import {
  describeWiring,
  unwireTap,
  wireTapToVeth,
} from "../../src/wiring/tap_wiring.ts";
import {
  IS_ROOT,
  run,
  sh,
  uniquePrefix,
  withScratchNetns,
} from "../support/harness.ts";

const GUEST_SCRIPT = fileURLToPath(new URL("./tap_echo.ts", import.meta.url));
const GUEST_TIME_LIMIT_S = 60;
const READY_TIMEOUT_MS = 20_000;

/** The first `ping` on PATH, or null (iputils-ping not installed). */
function findPing(): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      const path = `${dir}/ping`;
      if (Deno.statSync(path).isFile) return path;
    } catch { /* not here */ }
  }
  return null;
}

const ping = findPing();
const skipReason = !IS_ROOT
  ? "needs root (network namespaces, TAP devices, netlink)"
  : !ping
  ? "needs ping (apt-get install iputils-ping)"
  : null;

/** The guest process: its output so far, and a clean or forced stop. */
class Guest {
  output = "";
  readonly #child: Deno.ChildProcess;
  readonly #collected: Promise<void>;

  constructor(netnsPath: string, args: string[]) {
    const child = new Deno.Command("nsenter", {
      args: [
        `--net=${netnsPath}`,
        Deno.execPath(),
        "run",
        "--allow-ffi",
        GUEST_SCRIPT,
        ...args,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    this.#collected = (async () => {
      const text = child.stdout.pipeThrough(new TextDecoderStream());
      for await (const chunk of text) this.output += chunk;
    })();
  }

  /** Waits until the guest printed `line`, or fails with its stderr. */
  async waitFor(line: string, timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!this.output.split("\n").includes(line)) {
      if (Date.now() > until) {
        throw new Error(`guest did not print ${line}: ${await this.stop()}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * Waits (briefly) until the guest reported `n` answers of a kind: its
   * stdout may trail the reply ping already saw. Returns the count.
   */
  async settle(kind: "arp-reply" | "echo-reply", n: number): Promise<number> {
    const until = Date.now() + 2_000;
    while (this.count(kind) < n && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 20));
    }
    return this.count(kind);
  }

  /** Counts of the guest's answers so far. */
  count(kind: "arp-reply" | "echo-reply"): number {
    return this.output.split("\n").filter((l) => l === kind).length;
  }

  /** Closes its stdin (it exits), killing it by PID if it lingers. */
  async stop(): Promise<string> {
    try {
      await this.#child.stdin.close();
    } catch { /* already closed */ }
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 5_000);
    try {
      await this.#child.status;
      await this.#collected;
      const err = await new Response(this.#child.stderr).text();
      return err;
    } finally {
      clearTimeout(timer);
    }
  }
}

Deno.test({
  name: `wiring e2e: ping crosses veth -> TC redirect -> TAP -> guest and back${
    skipReason ? ` (skipped: ${skipReason})` : ""
  }`,
  ignore: skipReason !== null,
  sanitizeResources: false,
  async fn() {
    if (skipReason) console.error(`e2e ping test skipped: ${skipReason}`);
    const prefix = uniquePrefix("e2e");
    const net = `10.251.${1 + Math.floor(Math.random() * 254)}`;
    const guestIp = `${net}.2`;
    await withScratchNetns(prefix, ["host", "vm"], async ([hostNs, vmNs]) => {
      const host = `${prefix}host`, vm = `${prefix}vm`;
      await sh(
        "ip",
        ..."-n HOST link add vethA type veth peer name vethB netns VM"
          .replace("HOST", host).replace("VM", vm).split(" "),
      );
      await sh("ip", "-n", host, "addr", "add", `${net}.1/24`, "dev", "vethA");
      await sh("ip", "-n", host, "link", "set", "vethA", "up");

      const sock = withNetns(vmNs, () => {
        createTap({ name: "tapB", vnetHdr: true });
        return NetlinkSocket.open();
      });
      let guest: Guest | undefined;
      try {
        setLinkUp(sock, "vethB");
        setLinkUp(sock, "tapB");
        const pair = { veth: "vethB", tap: "tapB" };
        assert.deepEqual(wireTapToVeth(sock, pair), { changed: true });
        assert.equal(describeWiring(sock, pair).wired, true);
        // The guest speaks with the veth's identity, as a VM does.
        const mac = getLinkByName(sock, "vethB")?.mac;
        assert.ok(mac);

        guest = new Guest(vmNs, [
          "tapB",
          guestIp,
          mac,
          String(GUEST_TIME_LIMIT_S),
        ]);
        await guest.waitFor("ready", READY_TIMEOUT_MS);

        const pingFromHost = (count: number, wait: number) =>
          run("nsenter", [
            `--net=${hostNs}`,
            ping!,
            "-n",
            "-c",
            String(count),
            "-W",
            String(wait),
            "-i",
            "0.2",
            guestIp,
          ]);

        const wired = await pingFromHost(3, 2);
        assert.equal(wired.code, 0, `ping failed:\n${wired.stdout}`);
        assert.match(wired.stdout, /3 packets transmitted, 3 received/);
        assert.ok(await guest.settle("arp-reply", 1) >= 1, guest.output);
        assert.equal(await guest.settle("echo-reply", 3), 3, guest.output);

        // Without the redirects nothing reaches the guest.
        unwireTap(sock, pair);
        assert.equal(describeWiring(sock, pair).wired, false);
        const unwired = await pingFromHost(2, 1);
        assert.notEqual(unwired.code, 0, `ping succeeded:\n${unwired.stdout}`);
        assert.match(unwired.stdout, /2 packets transmitted, 0 received/);
        assert.equal(guest.count("echo-reply"), 3, guest.output);

        // Wired again, it works again.
        assert.deepEqual(wireTapToVeth(sock, pair), { changed: true });
        const rewired = await pingFromHost(2, 2);
        assert.equal(rewired.code, 0, `ping failed:\n${rewired.stdout}`);
        assert.equal(await guest.settle("echo-reply", 5), 5, guest.output);

        // Closing its stdin ends the guest cleanly, with its own tally.
        const stderr = await guest.stop();
        assert.match(guest.output, /^summary arp=\d+ echo=5$/m, stderr);
        guest = undefined;
      } finally {
        if (guest) await guest.stop();
        sock.close();
      }
    });
  },
});
