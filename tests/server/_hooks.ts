/**
 * Executable hooks for the daemon tests: a hooks dir as vmnic accepts it
 * (root's, mode 0755) and a hook that notes when it starts and ends for
 * which VM and NIC, and which process ran it, sleeping in between, so a
 * test can see operations overlap or not, and hold one in flight.
 *
 * @module
 */
import { join } from "node:path";
import type { Fixture } from "../provider/_fixture.ts";
import { writeScript } from "../hooks/hook_fixtures.ts";

/** Creates the fixture's hooks dir (mode 0755: vmnic refuses looser). */
export async function makeHooksDir(fx: Fixture): Promise<string> {
  await Deno.mkdir(fx.hooksDir, { recursive: true });
  await Deno.chmod(fx.hooksDir, 0o755);
  return fx.hooksDir;
}

/** One line of a timing hook's log. */
export interface HookMark {
  what: "start" | "end";
  vmId: string;
  index: number;
  /** The pid of the process that ran the hook (the daemon, or a CLI). */
  parent: number;
  /** Seconds since the epoch. */
  time: number;
}

/**
 * Writes a hook `name` for `events` that logs `start VM INDEX PPID TIME` to
 * `log`, sleeps `sleepS` seconds, then logs `end …`.
 */
export async function timingHook(
  fx: Fixture,
  opts: {
    name?: string;
    events: string[];
    sleepS: number;
    log: string;
  },
): Promise<string> {
  await makeHooksDir(fx);
  return await writeScript(
    fx.hooksDir,
    opts.name ?? "50-timing",
    [
      `# vmnic-events: ${opts.events.join(",")}`,
      "# vmnic-timeout: 120",
      "ctx=$(cat)",
      `vm=$(printf '%s' "$ctx" | sed -n 's/.*"vmId":"\\([^"]*\\)".*/\\1/p')`,
      `idx=$(printf '%s' "$ctx" | sed -n 's/.*"index":\\([0-9]*\\).*/\\1/p')`,
      `echo "start $vm $idx $PPID $(date +%s.%N)" >> ${opts.log}`,
      `sleep ${opts.sleepS}`,
      `echo "end $vm $idx $PPID $(date +%s.%N)" >> ${opts.log}`,
    ].join("\n"),
  );
}

/** The marks a timing hook logged. */
export async function hookMarks(log: string): Promise<HookMark[]> {
  let text = "";
  try {
    text = await Deno.readTextFile(log);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return text.split("\n").filter(Boolean).map((l) => {
    const [what, vmId, index, parent, time] = l.split(" ");
    return {
      what: what as "start" | "end",
      vmId,
      index: Number(index),
      parent: Number(parent),
      time: Number(time),
    };
  });
}

/** The [start, end] of the hook run for `vmId`/`index` (throws if absent). */
export function span(
  marks: HookMark[],
  vmId: string,
  index: number,
): [number, number] {
  const find = (what: string) =>
    marks.find((m) => m.what === what && m.vmId === vmId && m.index === index)
      ?.time;
  const s = find("start");
  const e = find("end");
  if (s === undefined || e === undefined) {
    throw new Error(
      `no whole hook run for ${vmId}/${index}: ${JSON.stringify(marks)}`,
    );
  }
  return [s, e];
}

/** A hooks dir file path. */
export function hookPath(fx: Fixture, name: string): string {
  return join(fx.hooksDir, name);
}
