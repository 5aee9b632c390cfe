/**
 * A CNI 1.1 plugin for the tests, since Debian's speak up to 1.0: it wraps
 * Debian's bridge plugin (ADD, DEL, CHECK are the bridge's, run at 1.0.0
 * and answered at 1.1.0) and speaks STATUS and GC itself. Its config
 * takes, besides the bridge's:
 *
 * - `notReadyFile`: while this file exists, STATUS fails with code 50;
 * - `gcLog`: GC writes its stdin there;
 * - `addLog`: ADD appends its `runtimeConfig` (one JSON line).
 *
 * @module
 */

/** The plugin as an executable script (put it in a bin dir as `bridge11`). */
export function cni11Plugin(bridge = "/usr/lib/cni/bridge"): string {
  return `#!/usr/bin/env -S ${Deno.execPath()} run --quiet --no-config --allow-read --allow-write --allow-env --allow-run
const text = await new Response(Deno.stdin.readable).text();
const cmd = Deno.env.get("CNI_COMMAND");
const conf = text ? JSON.parse(text) : {};
const out = (o) => console.log(JSON.stringify(o));
if (cmd === "VERSION") {
  out({ cniVersion: "1.1.0", supportedVersions: ["1.0.0", "1.1.0"] });
  Deno.exit(0);
}
if (cmd === "STATUS") {
  let missing = false;
  try { Deno.statSync(conf.notReadyFile); } catch { missing = true; }
  if (!missing) {
    out({ cniVersion: "1.1.0", code: 50, msg: "bridge11 is not ready", details: conf.notReadyFile });
    Deno.exit(1);
  }
  Deno.exit(0);
}
if (cmd === "GC") {
  Deno.writeTextFileSync(conf.gcLog, text);
  Deno.exit(0);
}
if (cmd === "ADD" && conf.addLog) {
  Deno.writeTextFileSync(conf.addLog, JSON.stringify(conf.runtimeConfig ?? {}) + "\\n", { append: true });
}
const inner = { ...conf, type: "bridge", cniVersion: "1.0.0" };
for (const k of ["notReadyFile", "gcLog", "addLog", "runtimeConfig"]) delete inner[k];
if (inner.prevResult) inner.prevResult = { ...inner.prevResult, cniVersion: "1.0.0" };
const child = new Deno.Command(${
    JSON.stringify(bridge)
  }, { stdin: "piped", stdout: "piped", stderr: "inherit" }).spawn();
const w = child.stdin.getWriter();
await w.write(new TextEncoder().encode(JSON.stringify(inner)));
await w.close();
const r = await child.output();
let body = new TextDecoder().decode(r.stdout);
if (body.trim()) {
  const parsed = JSON.parse(body);
  parsed.cniVersion = "1.1.0";
  body = JSON.stringify(parsed);
}
if (body.trim()) console.log(body);
Deno.exit(r.code);
`;
}
