/**
 * A provider over the in-memory kernel and plugins, for tests of its state
 * machine that need no root: temp dirs for the records and locks, a TS hook
 * that records every event (and fails on demand), simulated crashes at the
 * fault points, and a leak check of everything a VM can leave behind.
 *
 * @module
 */
import { join } from "node:path";
import { CniProvider, type OpenOptions } from "../../src/provider/provider.ts";
import type { ProviderConfig } from "../../src/provider/types.ts";
import type { FaultPoint } from "../../src/provider/faults.ts";
import type { HookContext, HookEvent, TsHook } from "../../src/hooks/types.ts";
import { FakeKernel } from "./fake_kernel.ts";
import { FakePlugins } from "./fake_plugins.ts";

/** One hook event a test saw. */
export interface SeenHook {
  event: HookEvent;
  operation: string;
  vmId: string;
  index: number;
}

/** A test's world: one kernel and plugin set, providers opened over them. */
export interface FakeWorld {
  dir: string;
  kernel: FakeKernel;
  plugins: FakePlugins;
  config: ProviderConfig;
  /** Hook events seen, in order. */
  hooks: SeenHook[];
  /** Make the next hook of this event (for this NIC index) fail, once. */
  failHook(event: HookEvent, index?: number): void;
  /** A provider over the world (close it, or let `dispose` do it). */
  open(opts?: OpenOptions): Promise<CniProvider>;
  /**
   * Starts `op` on a fresh provider and "kills the process" when it reaches
   * `point`: the operation hangs there forever, its provider is abandoned,
   * and what it wrote stays, as after a SIGKILL. Resolves once it got there
   * (rejects if the operation ended without reaching it).
   */
  crashAt(
    point: FaultPoint,
    op: (p: CniProvider) => Promise<unknown>,
    opts?: OpenOptions,
  ): Promise<void>;
  /** Writes a conflist into the conf dir. */
  conflist(name: string, list: Record<string, unknown>): Promise<void>;
  /** What is left on the "host": netns, leases, records, links; [] when clean. */
  leaks(): Promise<string[]>;
  /** Closes every provider and removes the temp dir. */
  dispose(): Promise<void>;
}

/** Makes a fresh world; call `dispose()` in `finally`. */
export async function fakeWorld(): Promise<FakeWorld> {
  const dir = await Deno.makeTempDir({ prefix: "vmnict-fake-" });
  const kernel = new FakeKernel();
  const plugins = new FakePlugins(kernel);
  const hooks: SeenHook[] = [];
  const failing = new Set<string>();
  const recorder: TsHook = {
    run(ctx: Readonly<HookContext>) {
      hooks.push({
        event: ctx.event,
        operation: ctx.operation,
        vmId: ctx.vmId,
        index: ctx.index,
      });
      if (
        failing.delete(ctx.event) || failing.delete(`${ctx.event}/${ctx.index}`)
      ) {
        throw new Error(`test hook refuses ${ctx.event}`);
      }
    },
  };
  const config: ProviderConfig = {
    rootDir: join(dir, "root"),
    runDir: join(dir, "run"),
    cniConfDir: join(dir, "net.d"),
    cniBinDirs: ["/fake/bin"],
    netnsDir: join(dir, "netns"),
    netnsPrefix: "t-",
    hooksDir: join(dir, "hooks.d"),
    lockWaitMs: 2000,
  };
  await Deno.mkdir(config.cniConfDir!, { recursive: true });
  const opened: CniProvider[] = [];
  const open = async (opts: OpenOptions = {}) => {
    const p = await CniProvider.open(config, {
      kernel,
      pluginExec: plugins,
      tsHooks: { "10-recorder.ts": recorder },
      ...opts,
    });
    opened.push(p);
    return p;
  };
  let crashes = 0;
  const world: FakeWorld = {
    dir,
    kernel,
    plugins,
    config,
    hooks,
    failHook: (event, index) =>
      failing.add(index === undefined ? event : `${event}/${index}`),
    open,
    async crashAt(point, op, opts = {}) {
      // A crashed process's locks die with it: the hung operation's are in
      // a run dir of its own, so the next provider is not blocked by them.
      const runDir = join(dir, `crashed-run-${++crashes}`);
      let reached!: () => void;
      let hit = false;
      const there = new Promise<void>((resolve) => reached = resolve);
      const p = await CniProvider.open({ ...config, runDir }, {
        kernel,
        pluginExec: plugins,
        tsHooks: { "10-recorder.ts": recorder },
        ...opts,
        fault: (at) => {
          if (at !== point || hit) return;
          hit = true;
          reached();
          return new Promise<never>(() => {});
        },
      });
      const ended = op(p).then(
        () => "ended",
        (e) => `failed: ${e instanceof Error ? e.message : e}`,
      );
      // Work in the background (a pool's fill) may reach it after `op`.
      const late = ended.then(async (how) => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          there,
          new Promise((r) => timer = setTimeout(r, 2000)),
        ]);
        clearTimeout(timer);
        return hit ? "crashed" : how;
      });
      const how = await Promise.race([there.then(() => "crashed"), late]);
      if (how !== "crashed") {
        p.close();
        throw new Error(`the operation ${how} without reaching ${point}`);
      }
      // Its store stays open (a hung process's would): closing it under
      // the hung operation is not what a crash does.
      opened.push(p);
    },
    async conflist(name, list) {
      await Deno.writeTextFile(
        join(config.cniConfDir!, `${name}.conflist`),
        JSON.stringify(list),
      );
    },
    async leaks() {
      const out: string[] = [];
      for (const path of kernel.netnsPaths()) out.push(`netns ${path}`);
      for (const l of plugins.leases()) {
        out.push(`lease ${l.address} (${l.containerId})`);
      }
      const p = await open();
      try {
        for (const vm of await p.vms()) out.push(`VM record ${vm.vmId}`);
        for (const n of await p.list()) {
          out.push(`NIC record ${n.vmId}/${n.index} (${n.state})`);
        }
      } finally {
        p.close();
      }
      for (const l of kernel.links()) {
        if (l.kind === "veth") out.push(`host veth ${l.name}`);
      }
      return out;
    },
    async dispose() {
      for (const p of opened) {
        try {
          p.close();
        } catch { /* closed already */ }
      }
      await Deno.remove(dir, { recursive: true });
    },
  };
  return world;
}

/** A bridge + host-local conflist for the fake plugins. */
export function bridgeList(
  name: string,
  opts: { subnets?: string[]; ipsCapability?: boolean; bridge?: string } = {},
): Record<string, unknown> {
  return {
    cniVersion: "1.0.0",
    name,
    plugins: [{
      type: "bridge",
      bridge: opts.bridge ?? `br-${name}`.slice(0, 15),
      isGateway: true,
      ...(opts.ipsCapability ? { capabilities: { ips: true } } : {}),
      ipam: {
        type: "host-local",
        ranges: (opts.subnets ?? ["10.99.0.0/24"]).map((subnet) => [{
          subnet,
        }]),
        routes: [{ dst: "0.0.0.0/0" }],
      },
    }],
  };
}
