/**
 * What the event log costs (issue 13): `add` + `delete` of a 1-NIC VM
 * through the library with events recorded (the default: a trace, timed
 * phases, one row per operation) against the same with `eventRetention:
 * null` (no trace, no row), on one root dir, alternating pair by pair so
 * that drift hits both alike. Prints medians, p90 and the ratio.
 *
 * Root only, inside a throwaway host netns: `deno task bench:events`.
 * `BENCH_N` sets the pairs (default 200).
 *
 * @module
 */
import { CniProvider } from "../src/provider/provider.ts";
import {
  benchIterations,
  inThrowawayNetns,
  makeProviderSetup,
  removeRun,
  RUN_PREFIX,
} from "./_support.ts";

const N = benchIterations(200);
const WARMUP = 5;

if (Deno.uid() !== 0 || !inThrowawayNetns()) {
  console.error(
    "bench/events.ts: needs root inside a throwaway netns: run `deno task bench:events`",
  );
  Deno.exit(2);
}

const setup = makeProviderSetup({
  name: "benchnet",
  bridge: `vbe${Deno.pid.toString(36)}`.slice(0, 15),
  subnet: "10.242.0.0/16",
}, RUN_PREFIX);
const on = await CniProvider.open(setup.config);
const off = await CniProvider.open({ ...setup.config, eventRetention: null });
const cleanup = () =>
  removeRun(RUN_PREFIX, setup.dir, () => {
    on.close();
    off.close();
  }, setup.claim);
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(sig, () => {
    cleanup();
    Deno.exit(130);
  });
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

try {
  const times = { on: [] as number[], off: [] as number[] };
  let vm = 0;
  for (let i = 0; i < WARMUP + N; i++) {
    // Alternate which goes first: neither always runs on a warmer cache.
    const order = i % 2 ? (["on", "off"] as const) : (["off", "on"] as const);
    for (const which of order) {
      const p = which === "on" ? on : off;
      const id = `e${vm++}`;
      const t0 = performance.now();
      await p.add(id, {});
      await p.delete([id]);
      if (i >= WARMUP) times[which].push(performance.now() - t0);
    }
  }
  const m = { on: pct(times.on, 50), off: pct(times.off, 50) };
  console.log("| add + delete, 1 NIC, library | median ms | p90 ms |");
  console.log("|---|---:|---:|");
  console.log(
    `| events off (\`eventRetention: null\`) | ${m.off.toFixed(2)} | ${
      pct(times.off, 90).toFixed(2)
    } |`,
  );
  console.log(
    `| events on (default) | ${m.on.toFixed(2)} | ${
      pct(times.on, 90).toFixed(2)
    } |`,
  );
  // Pair by pair (each pair back to back), so drift cancels out.
  const diffs = times.on.map((t, k) => t - times.off[k]);
  const d = pct(diffs, 50);
  console.log(
    `\nevents cost: median paired difference ${d.toFixed(2)} ms = ` +
      `${(d / m.off * 100).toFixed(1)} % of the median without ` +
      `(ratio of medians ${((m.on / m.off - 1) * 100).toFixed(1)} %); ${N} ` +
      `pairs after ${WARMUP} untimed; ` +
      `${(await on.events({ limit: 100_000 })).length} events recorded`,
  );
} finally {
  cleanup();
}
