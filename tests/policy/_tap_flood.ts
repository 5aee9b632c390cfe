/**
 * A guest that sends: attaches to a TAP in a netns and writes one frame
 * (hex, argv) `count` times, `perMs` frames each millisecond, then prints
 * how many it wrote. For the live-change test (a change must not lose what
 * both policies allow while frames flow from another process).
 *
 * `deno run --allow-ffi --allow-read tests/policy/_tap_flood.ts NETNS_PATH TAP HEXFRAME COUNT PER_MS`
 *
 * @module
 */
import { TapWriter } from "./_frames.ts";

const [path, tap, hex, countText, perMsText] = Deno.args;
const frame = Uint8Array.from(
  hex.match(/../g)!.map((b) => parseInt(b, 16)),
);
const count = Number(countText);
const perMs = Number(perMsText);
const w = TapWriter.attach(path, tap);
console.log("ready");
let sent = 0;
while (sent < count) {
  for (let i = 0; i < perMs && sent < count; i++, sent++) w.write(frame);
  await new Promise((r) => setTimeout(r, 1));
}
w.close();
console.log(`sent ${sent}`);
