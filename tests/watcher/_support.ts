/**
 * Support of the watcher tests: one isolated vmnic installation per test
 * (tests/provider/_fixture.ts: its own prefix, temp dirs, bridge and
 * subnet), a provider opened on it with the watcher running, a TAP opened
 * and closed as a hypervisor does, polling for a condition with a bound,
 * and a cleanup that removes everything (VMs, netns, bridge, temp dir, the
 * prefix's claim, open TAP descriptors) even when the test fails.
 *
 * @module
 */
import { type Fixture, makeFixture } from "../provider/_fixture.ts";
import { CniProvider, type OpenOptions } from "../../src/provider/provider.ts";
import type { EventRecord } from "../../src/store/events.ts";
import {
  startWatcher,
  type Watcher,
  type WatcherOptions,
} from "../../src/watcher/watcher.ts";
import { withNetns } from "../../src/kernel/netns.ts";
import {
  IFF_MULTI_QUEUE,
  IFF_NO_PI,
  IFF_TAP,
  IFF_VNET_HDR,
  IFNAMSIZ,
  IFREQ_SIZE,
  O_CLOEXEC,
  O_RDWR,
  TUNSETIFF,
} from "../../src/kernel/constants.ts";
import { cstr, errno, libc } from "../../src/sys/libc.ts";
import { KernelError } from "../../src/sys/errors.ts";

/** A bound on every reaction the tests wait for (the box is shared). */
export const REACTION_BOUND_MS = 5_000;
/** The settle time the tests run the watcher with. */
export const TEST_SETTLE_MS = 300;

/** One installation with a provider and its watcher. */
export interface WatchEnv {
  fx: Fixture;
  provider: CniProvider;
  watcher: Watcher;
  /** The watcher's events (`watch:*`), oldest first. */
  watchEvents(): Promise<EventRecord[]>;
  /** Opens `tap` of `vmId` as a hypervisor does (closed at cleanup). */
  attach(vmId: string, tap: string, opts?: { multiQueue?: boolean }): number;
  /** Closes a descriptor {@linkcode attach} gave. */
  detach(fd: number): void;
}

/** Options of {@linkcode watchEnv}. */
export interface WatchEnvOptions {
  /** Second octet of the subnet (tests/provider/_fixture.ts). */
  octet: number;
  /** The watcher's settings (settle time defaults to TEST_SETTLE_MS). */
  watch?: WatcherOptions;
  /** The provider's open options (a fault hook, say). */
  open?: OpenOptions;
  /** Start the watcher only once `before` has run (VMs added first). */
  before?: (p: CniProvider, fx: Fixture) => Promise<void>;
}

/**
 * Makes an installation, runs `opts.before`, starts the watcher, runs
 * `fn`, and removes everything, also when anything throws.
 */
export async function withWatchEnv(
  tag: string,
  opts: WatchEnvOptions,
  fn: (env: WatchEnv) => Promise<void>,
): Promise<void> {
  const fx = await makeFixture(tag, { octet: opts.octet });
  const fds = new Set<number>();
  let provider: CniProvider | undefined;
  let watcher: Watcher | undefined;
  try {
    provider = await CniProvider.open(fx.config, opts.open ?? {});
    if (opts.before) await opts.before(provider, fx);
    watcher = await startWatcher(provider, {
      settleMs: TEST_SETTLE_MS,
      ...opts.watch,
    });
    const p = provider;
    const env: WatchEnv = {
      fx,
      provider: p,
      watcher,
      watchEvents: async () =>
        (await p.events({ limit: 10_000 })).filter((e) =>
          e.op.startsWith("watch:")
        ),
      attach(vmId, tap, o = {}) {
        const fd = attachTap(
          `/var/run/netns/${fx.prefix}${vmId}`,
          tap,
          o.multiQueue ?? false,
        );
        fds.add(fd);
        return fd;
      },
      detach(fd) {
        if (fds.delete(fd)) libc().close(fd);
      },
    };
    await fn(env);
  } finally {
    await killHolders();
    await watcher?.stop();
    for (const fd of fds) libc().close(fd);
    provider?.close();
    await fx.cleanup();
  }
}

/**
 * Opens the TAP `tap` in the netns at `netnsPath` as a hypervisor does
 * (`TUNSETIFF` on `/dev/net/tun`, from inside that netns): the TAP has a
 * carrier while the descriptor is open.
 */
export function attachTap(
  netnsPath: string,
  tap: string,
  multiQueue = false,
): number {
  return withNetns(netnsPath, () => {
    const fd = libc().open(cstr("/dev/net/tun"), O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) throw new KernelError("attach tap", tap, errno());
    const ifreq = new Uint8Array(IFREQ_SIZE);
    ifreq.set(new TextEncoder().encode(tap));
    new DataView(ifreq.buffer).setUint16(
      IFNAMSIZ,
      IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (multiQueue ? IFF_MULTI_QUEUE : 0),
      true,
    );
    if (libc().ioctl(fd, BigInt(TUNSETIFF), ifreq) < 0) {
      const e = errno();
      libc().close(fd);
      throw new KernelError("attach tap", tap, e, "TUNSETIFF");
    }
    return fd;
  });
}

/**
 * Polls `probe` every 50 ms until it returns a value other than
 * undefined/false, or throws after `timeoutMs` naming `what`. Resolves
 * with the value and how long it took.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = REACTION_BOUND_MS,
): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) {
      return { value: v as T, ms: performance.now() - start };
    }
    if (performance.now() - start > timeoutMs) {
      throw new Error(`${what}: not within ${timeoutMs} ms`);
    }
    await sleep(50);
  }
}

/** Waits `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Whether the provider's records say the VM is quiesced. */
export async function isQuiesced(
  p: CniProvider,
  vmId: string,
): Promise<boolean> {
  return (await p.vms()).find((v) => v.vmId === vmId)?.quiesced ?? false;
}

/** A hypervisor stand-in process holding a TAP (tests/watcher/_tap_holder.ts). */
export interface TapHolder {
  /** Its PID. */
  pid: number;
  /** SIGKILLs it by its PID (a hypervisor crashing) and waits for it. */
  kill(): Promise<void>;
}

/** Every holder started and not yet killed: killed by {@linkcode killHolders}. */
const holders = new Set<TapHolder>();

/**
 * Starts `_tap_holder.ts` inside the netns at `netnsPath` (nsenter, as
 * `vmnic hv-args` says to start a hypervisor) and resolves once it holds
 * `tap`.
 */
export async function spawnTapHolder(
  netnsPath: string,
  tap: string,
  multiQueue = false,
): Promise<TapHolder> {
  const child = new Deno.Command("nsenter", {
    args: [
      `--net=${netnsPath}`,
      "--",
      Deno.execPath(),
      "run",
      "--allow-ffi",
      new URL("./_tap_holder.ts", import.meta.url).pathname,
      tap,
      ...(multiQueue ? ["multi"] : []),
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const errDone = (async () => {
    for await (const t of child.stderr.pipeThrough(new TextDecoderStream())) {
      stderr += t;
    }
  })();
  const status = child.status;
  const h: TapHolder = {
    pid: child.pid,
    async kill() {
      holders.delete(h);
      try {
        Deno.kill(child.pid, "SIGKILL");
      } catch { /* exited meanwhile */ }
      await status;
      await errDone;
    },
  };
  holders.add(h);
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const timer = setTimeout(() => void h.kill(), REACTION_BOUND_MS * 4);
  try {
    let text = "";
    while (!text.includes("attached")) {
      const { value, done } = await reader.read();
      if (done) {
        await h.kill();
        throw new Error(`tap holder for ${tap} ended: ${stderr}`);
      }
      text += value;
    }
  } finally {
    clearTimeout(timer);
  }
  // Keep draining, so the child never blocks on a full pipe.
  void (async () => {
    try {
      while (!(await reader.read()).done) { /* drain */ }
    } catch { /* ended */ }
  })();
  return h;
}

/** Kills every holder still running (cleanup). */
export async function killHolders(): Promise<void> {
  await Promise.all([...holders].map((h) => h.kill()));
}
