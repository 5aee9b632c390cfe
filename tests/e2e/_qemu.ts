/**
 * A QEMU guest started inside a VM's netns on its vmnic TAP, with its serial
 * console captured, for the end-to-end tests.
 *
 * @module
 */
import type { GuestImage } from "../../scripts/build_guest.ts";
import type { HvArgs } from "../../src/provider/hv_args.ts";
import { run } from "../support/harness.ts";

/** The accelerator the guests run under: `$VMNIC_E2E_ACCEL` or `tcg`. */
export type Accel = "kvm" | "tcg";

/**
 * `tcg` unless `VMNIC_E2E_ACCEL=kvm`: the nested /dev/kvm of these build
 * machines hangs a stock kernel at boot, so KVM is opt-in.
 */
export function chooseAccel(): Accel {
  return Deno.env.get("VMNIC_E2E_ACCEL") === "kvm" ? "kvm" : "tcg";
}

/** Why the guest tests cannot run here, or `null` when QEMU is present. */
export async function qemuMissing(): Promise<string | null> {
  const r = await run("qemu-system-x86_64", ["--version"]).catch(() => null);
  return r?.code === 0 ? null : "qemu-system-x86_64 not installed";
}

/** What {@linkcode QemuGuest.start} needs. */
export interface GuestSpec {
  image: GuestImage;
  /**
   * `vmnic hv-args VM --for qemu --json`: how to enter the VM's netns and
   * the `-netdev`/`-device` pairs of every NIC, used as vmnic prints them.
   */
  hv: Pick<HvArgs, "launch" | "args">;
  vcpus: number;
  /** Kernel `ip=` parameter from `vmnic guest-config --format cmdline`. */
  ipParam: string;
  accel: Accel;
  /**
   * A shell on the serial console after boot (`vmnic.shell=1`): commands
   * go in with {@linkcode QemuGuest.sh}.
   */
  console?: boolean;
  /** Memory in MiB (default 256). */
  memoryMb?: number;
}

/** One running QEMU; kill it by its PID with {@linkcode QemuGuest.kill}. */
export class QemuGuest {
  #serial = "";
  #stderr = "";
  #stdin?: WritableStreamDefaultWriter<Uint8Array>;
  #commands = 0;
  #exited: Promise<Deno.CommandStatus>;
  #done = false;
  readonly startedAt = performance.now();

  private constructor(readonly child: Deno.ChildProcess, console = false) {
    if (console) this.#stdin = child.stdin.getWriter();
    this.#exited = child.status.then((s) => {
      this.#done = true;
      return s;
    });
    void this.#drain(child.stdout, (t) => this.#serial += t);
    void this.#drain(child.stderr, (t) => this.#stderr += t);
  }

  /**
   * Starts QEMU the way `vmnic hv-args` says: its `nsenter --net=` prefix
   * (not `ip netns exec`, whose private mount namespace would hide vmnic's
   * netns mounts) and its NIC arguments, verbatim. nsenter execs QEMU, so
   * the child's PID is QEMU's.
   */
  static start(spec: GuestSpec): QemuGuest {
    const [nsenter, ...enter] = spec.hv.launch.nsenter;
    const args = [
      ...enter,
      "qemu-system-x86_64",
      "-M",
      "q35",
      "-accel",
      spec.accel,
      "-smp",
      String(spec.vcpus),
      "-m",
      String(spec.memoryMb ?? 256),
      "-nodefaults",
      "-no-user-config",
      "-display",
      "none",
      "-monitor",
      "none",
      "-serial",
      "stdio",
      "-no-reboot",
      "-kernel",
      spec.image.kernel,
      "-initrd",
      spec.image.initrd,
      "-append",
      `console=ttyS0 ${spec.ipParam} quiet panic=-1${
        spec.console ? " vmnic.shell=1" : ""
      }`,
      ...spec.hv.args,
    ];
    const child = new Deno.Command(nsenter, {
      args,
      stdin: spec.console ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return new QemuGuest(child, spec.console);
  }

  /**
   * Runs a command in the guest's console shell (a guest started with
   * `console`) and returns its exit code and what it printed.
   */
  async sh(
    cmd: string,
    timeoutMs = 60_000,
  ): Promise<{ code: number; out: string }> {
    if (!this.#stdin) throw new Error("the guest has no console shell");
    const tag = 7000 + ++this.#commands;
    const from = this.#serial.length;
    // The echo of the typed line shows $((tag)) unexpanded: only the
    // shell's own output matches.
    await this.#stdin.write(
      new TextEncoder().encode(`${cmd}; echo "@@$((${tag}))@@ $?"\n`),
    );
    const re = new RegExp(`@@${tag}@@ (\\d+)`);
    const deadline = performance.now() + timeoutMs;
    while (true) {
      const text = this.#serial.slice(from);
      const m = text.match(re);
      if (m) {
        const echoEnd = text.indexOf("\n");
        return {
          code: Number(m[1]),
          out: text.slice(echoEnd + 1, m.index).replace(/\r/g, ""),
        };
      }
      if (this.#done) throw this.#failure(`QEMU exited during ${cmd}`);
      if (performance.now() > deadline) {
        throw this.#failure(`${cmd}: no answer in ${timeoutMs} ms`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** The serial console so far. */
  get serial(): string {
    return this.#serial;
  }

  /** True while QEMU has not exited. */
  get running(): boolean {
    return !this.#done;
  }

  /**
   * Waits until the serial console shows a line matching `re` and returns
   * its match; throws with the console and QEMU's stderr when QEMU exits or
   * `timeoutMs` passes first.
   */
  async waitFor(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const deadline = performance.now() + timeoutMs;
    while (true) {
      const m = this.#serial.match(re);
      if (m) return m;
      if (this.#done) throw this.#failure(`QEMU exited before ${re}`);
      if (performance.now() > deadline) {
        throw this.#failure(
          `no ${re} on the serial console in ${timeoutMs} ms`,
        );
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** SIGKILLs QEMU by its PID (if still running) and waits for it. */
  async kill(): Promise<void> {
    // Not waited for: a QEMU that reads nothing must not hold the kill up.
    this.#stdin?.close().catch(() => {});
    if (!this.#done) {
      try {
        Deno.kill(this.child.pid, "SIGKILL");
      } catch { /* exited meanwhile */ }
    }
    await this.#exited;
  }

  #failure(what: string): Error {
    return new Error(
      `${what}\n--- serial ---\n${this.#serial}\n--- qemu stderr ---\n${this.#stderr}`,
    );
  }

  async #drain(
    stream: ReadableStream<Uint8Array>,
    sink: (text: string) => void,
  ): Promise<void> {
    const dec = new TextDecoder();
    for await (const chunk of stream) sink(dec.decode(chunk, { stream: true }));
  }
}

/**
 * The launch and NIC arguments of one single-queue TAP that vmnic did not
 * make (a baseline's), in the form `vmnic hv-args` gives them.
 */
export function plainTapArgs(
  netnsPath: string,
  tap: string,
  mac: string,
): Pick<HvArgs, "launch" | "args"> {
  return {
    launch: { nsenter: ["nsenter", `--net=${netnsPath}`, "--"], note: "" },
    args: [
      "-netdev",
      `tap,id=net0,ifname=${tap},script=no,downscript=no`,
      "-device",
      `virtio-net-pci,netdev=net0,mac=${mac}`,
    ],
  };
}
