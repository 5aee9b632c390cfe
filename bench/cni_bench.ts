/**
 * The CNI runtime's own overhead: ADD+DEL of a bridge + host-local list
 * through CniRuntime (config injection, VERSION check from its per-binary
 * cache, result conversion, FileAttachmentCache write/read/remove) against
 * spawning the bridge plugin directly for ADD then DEL with the same stdin and
 * env, in the same run. Root only; run it inside a throwaway netns
 * (`unshare --net deno bench ...`, as `deno task bench` does).
 */
import { join } from "node:path";
import {
  CniRuntime,
  FileAttachmentCache,
  parseConfList,
} from "../src/cni/mod.ts";

const IS_ROOT = Deno.uid() === 0;
const BIN = "/usr/lib/cni";
const HAVE_BRIDGE = await Deno.stat(join(BIN, "bridge")).then(
  () => true,
  () => false,
);
const ENABLED = IS_ROOT && HAVE_BRIDGE;
// Recognisable as a test leftover (`vmnict…`), unique to this run.
const tag = `vmnictcb${Deno.pid.toString(36)}`;
const NS_NAME = `${tag}-c`;
const NS_PATH = `/var/run/netns/${NS_NAME}`;
const BRIDGE = `vtcb${Deno.pid.toString(36)}`.slice(0, 15);
const tmp = ENABLED
  ? await Deno.makeTempDir({ prefix: "vmnic-cni-bench-" })
  : "";

function ipSync(...args: string[]): void {
  new Deno.Command("ip", { args, stdout: "null", stderr: "null" }).outputSync();
}

if (ENABLED) ipSync("netns", "add", NS_NAME);

const list = parseConfList({
  cniVersion: "1.0.0",
  name: "vmnicbench",
  plugins: [{
    type: "bridge",
    bridge: BRIDGE,
    isGateway: true,
    ipam: {
      type: "host-local",
      ranges: [[{ subnet: "10.233.200.0/24" }]],
      dataDir: join(tmp, "ipam"),
    },
  }],
}, "bench");
const rt = { containerId: `${tag}-vm`, netns: NS_PATH, ifName: "eth0" };
const runtime = new CniRuntime({
  binDirs: [BIN],
  cache: new FileAttachmentCache(join(tmp, "cache")),
});

const bareConf = {
  ...list.plugins[0].conf,
  name: list.name,
  cniVersion: list.cniVersion,
};
const bareEnv = (command: string) => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: rt.containerId,
  CNI_NETNS: rt.netns,
  CNI_IFNAME: rt.ifName,
  CNI_ARGS: "",
  CNI_PATH: BIN,
});

/** Spawns the bridge plugin once, as a runtime-less caller would. */
async function bareExec(command: string, stdin: string): Promise<string> {
  const child = new Deno.Command(join(BIN, "bridge"), {
    env: bareEnv(command),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(stdin));
  await w.close();
  const out = await child.output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) throw new Error(`bridge ${command}: ${text}`);
  return text;
}

Deno.bench({
  name: "bare bridge plugin exec: ADD + DEL",
  group: "cni add+del",
  baseline: true,
  ignore: !ENABLED,
  async fn() {
    const result = await bareExec("ADD", JSON.stringify(bareConf));
    await bareExec(
      "DEL",
      JSON.stringify({ ...bareConf, prevResult: JSON.parse(result) }),
    );
  },
});

Deno.bench({
  name: "CniRuntime addNetworkList + delNetworkList",
  group: "cni add+del",
  ignore: !ENABLED,
  async fn() {
    await runtime.addNetworkList(list, rt);
    await runtime.delNetworkList(list, rt);
  },
});

// Whatever an interrupted iteration left behind goes with the process.
globalThis.addEventListener("unload", () => {
  if (!ENABLED) return;
  ipSync("netns", "del", NS_NAME);
  ipSync("link", "del", BRIDGE);
  Deno.removeSync(tmp, { recursive: true });
});
