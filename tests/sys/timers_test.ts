import assert from "node:assert/strict";
import { after, MAX_DELAY_MS, sleep } from "../../src/sys/timers.ts";

const TIMERS = new URL("../../src/sys/timers.ts", import.meta.url).href;

Deno.test("after calls once, no sooner than asked", async () => {
  const start = performance.now();
  const calls: number[] = [];
  after(30, () => calls.push(performance.now() - start));
  await sleep(120);
  assert.equal(calls.length, 1);
  // The runtime's clock is whole ms; allow it that rounding.
  assert.ok(calls[0] >= 29, `called after ${calls[0]} ms`);
});

Deno.test("a cancelled timer never calls; cancel is idempotent, also after the call", async () => {
  let called = 0;
  const t = after(10, () => called++);
  t.cancel();
  t.cancel();
  const ran = after(0, () => called += 10);
  await sleep(60);
  ran.cancel();
  assert.equal(called, 10);
});

Deno.test("delays that AbortSignal.timeout would refuse are clamped, not thrown", async () => {
  const seen: string[] = [];
  after(-5, () => seen.push("negative"));
  after(Number.NaN, () => seen.push("NaN"));
  after(0.2, () => seen.push("fraction"));
  const never = after(Infinity, () => seen.push("infinity"));
  const longest = after(MAX_DELAY_MS + 1, () => seen.push("too long"));
  await sleep(50);
  never.cancel();
  longest.cancel();
  assert.deepEqual(seen.sort(), ["NaN", "fraction", "negative"]);
});

/** Runs `code` (importing the module as `t`) in its own process. */
async function inProcess(code: string) {
  const dir = await Deno.makeTempDir({ prefix: "vmnict-timers-" });
  try {
    const file = `${dir}/main.ts`;
    await Deno.writeTextFile(
      file,
      `import * as t from ${JSON.stringify(TIMERS)};\n${code}\n`,
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-config", "--allow-read=" + dir, file],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // A process the timer wrongly holds would wait its whole 60 s.
    let guard: ReturnType<typeof setTimeout> | undefined;
    const hung = new Promise<"hung">((resolve) => {
      guard = setTimeout(() => resolve("hung"), 30_000);
    });
    const out = await Promise.race([child.output(), hung]);
    clearTimeout(guard);
    if (out === "hung") {
      child.kill("SIGKILL");
      await child.output();
      return { hung: true, stdout: "", code: -1 };
    }
    return {
      hung: false,
      stdout: new TextDecoder().decode(out.stdout),
      stderr: new TextDecoder().decode(out.stderr),
      code: out.code,
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a pending timer keeps its process alive until it runs", async () => {
  const r = await inProcess(`t.after(200, () => console.log("ran"));`);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "ran\n");
});

Deno.test("a cancelled timer does not hold its process up", async () => {
  const r = await inProcess(
    `const x = t.after(60_000, () => console.log("ran"));
     x.cancel();
     await t.sleep(10);
     console.log("done");`,
  );
  assert.equal(r.hung, false, "the process waited for a cancelled timer");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "done\n");
});

Deno.test("after preferGlobalTimers, timers are the global setTimeout's, freed when cancelled", async () => {
  const r = await inProcess(
    `const calls = { set: 0, clear: 0 };
     const set = globalThis.setTimeout, clear = globalThis.clearTimeout;
     // deno-lint-ignore no-explicit-any
     (globalThis as any).setTimeout = (...a: any[]) => (calls.set++, (set as any)(...a));
     // deno-lint-ignore no-explicit-any
     (globalThis as any).clearTimeout = (h: any) => (calls.clear++, clear(h));
     t.after(5, () => {}).cancel();
     t.preferGlobalTimers();
     t.after(60_000, () => console.log("ran")).cancel();
     let ran = false;
     t.after(Infinity, () => ran = true).cancel();
     await t.sleep(20);
     console.log(JSON.stringify({ ...calls, ran }));`,
  );
  assert.equal(r.hung, false, "a cancelled global timer held the process");
  assert.equal(r.code, 0, r.stderr);
  // Before the switch: none; after it: three timers (one the sleep's),
  // two cancelled, and Infinity clamped rather than turned into 1 ms.
  assert.deepEqual(JSON.parse(r.stdout), { set: 3, clear: 2, ran: false });
});
