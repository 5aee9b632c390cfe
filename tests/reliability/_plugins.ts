/**
 * Fake CNI plugins for failures real ones cannot produce, chained after the
 * real bridge plugin. `passPlugin` passes the previous result through on
 * ADD (so vmnic gets a real result) after doing what its config asks:
 * sleep, fill a directory, log its calls, leave a child holding its
 * stdout. `hangPlugin` hangs on ADD with a child of its own; `spyPlugin`
 * only logs that it ran and fails.
 *
 * @module
 */

/** The config keys `passPlugin` understands (besides the CNI ones). */
export interface PassConfig {
  /** Sleep this long on ADD and DEL. */
  sleepMs?: number;
  /** On ADD, write zeros into this dir until it is full. */
  fillDir?: string;
  /** Append `<command> <pid>` here on every call. */
  log?: string;
  /** On ADD, leave a `sleep 60` holding stdout; its pid goes to this file. */
  leaveChildPidFile?: string;
}

/** A pass-through plugin (a Deno script; see {@linkcode PassConfig}). */
export function passPlugin(): string {
  return `#!/usr/bin/env -S ${Deno.execPath()} run --quiet --no-config --allow-read --allow-write --allow-env=CNI_COMMAND --allow-run=sleep
const conf = JSON.parse(await new Response(Deno.stdin.readable).text());
const cmd = Deno.env.get("CNI_COMMAND");
if (conf.log) {
  Deno.writeTextFileSync(conf.log, cmd + " " + Deno.pid + "\\n", { append: true });
}
if (cmd === "VERSION") {
  console.log(JSON.stringify({ cniVersion: "1.0.0", supportedVersions: ["0.4.0", "1.0.0"] }));
  Deno.exit(0);
}
if (conf.sleepMs && (cmd === "ADD" || cmd === "DEL")) {
  await new Promise((r) => setTimeout(r, conf.sleepMs));
}
if (cmd === "ADD") {
  if (conf.fillDir) {
    const f = Deno.openSync(conf.fillDir + "/filler-" + Date.now(), { write: true, create: true });
    const block = new Uint8Array(4096);
    try {
      for (;;) f.writeSync(block);
    } catch { /* full */ }
    f.close();
  }
  if (conf.leaveChildPidFile) {
    const child = new Deno.Command("sleep", { args: ["60"], stdin: "null", stdout: "inherit", stderr: "inherit" }).spawn();
    Deno.writeTextFileSync(conf.leaveChildPidFile, String(child.pid));
    child.unref();
  }
  console.log(JSON.stringify({ ...conf.prevResult, cniVersion: conf.cniVersion }));
}
Deno.exit(0);
`;
}

/**
 * A plugin that hangs on ADD, with a child (`sleep 300`) of its own; both
 * pids go to `pidFile` (its own first). VERSION and DEL behave.
 */
export function hangPlugin(pidFile: string): string {
  return `#!/bin/sh
cat >/dev/null
case "$CNI_COMMAND" in
  VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}' ;;
  ADD)
    echo $$ > ${pidFile}
    sleep 300 &
    echo $! >> ${pidFile}
    wait
    ;;
esac
exit 0
`;
}

/** A plugin that logs `<command>` to `log` and fails. */
export function spyPlugin(log: string): string {
  return `#!/bin/sh
echo "$CNI_COMMAND" >> ${log}
cat >/dev/null
echo '{"cniVersion":"1.0.0","code":999,"msg":"spy"}'
exit 1
`;
}

/** True while `pid` is a live process (a zombie counts as gone). */
export async function alive(pid: number): Promise<boolean> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    return !/^State:\s+Z/m.test(status);
  } catch {
    return false;
  }
}

/** The pids in a pid file (one a line). */
export async function pidsIn(file: string): Promise<number[]> {
  try {
    return (await Deno.readTextFile(file)).split("\n").map(Number)
      .filter((n) => n > 0);
  } catch {
    return [];
  }
}
