/**
 * add is idempotent (issue #9, item 5): `add VM --nics N` means "the VM has
 * NICs 0..N-1". Several processes running the same add at once, as a VM
 * manager retrying after a timeout would, must leave exactly those NICs,
 * one lease each, every successful call printing the same JSON; so must
 * retries after some of them were SIGKILLed mid-add. Also mixed requests
 * (`--nics 1` with `--nics 2`: NIC 0 is the same object in both), a hot-add
 * of one index from many processes, and concurrent adds from the library
 * in one process beside CLI processes.
 */
import assert from "node:assert/strict";
import { ipJson, rootTest } from "../support/harness.ts";
import {
  type CliRun,
  describe,
  makeEnv,
  type NicJson,
  randomBelow,
  type TestEnv,
} from "./_env.ts";
import { checkGone, checkWhole, exitIs, Tally } from "./_checks.ts";

/** Processes per round. */
const PROCS = 6;
/** Rounds of each kind. */
const ROUNDS = 4;

/** Problems unless every successful run printed the same JSON. */
function sameJson(runs: CliRun[], what: string): string[] {
  const outs = runs.filter((r) => r.code === 0).map((r) => r.stdout);
  if (!outs.length) return [`${what}: no call succeeded`];
  const distinct = [...new Set(outs)];
  return distinct.length === 1 ? [] : [
    `${what}: ${distinct.length} different JSON results:\n${
      distinct.join("\n---\n")
    }`,
  ];
}

/** Host veths on the env's bridge (one per NIC alive). */
async function bridgePorts(env: TestEnv): Promise<number> {
  return (await ipJson("link")).filter((l) =>
    l.master === env.bridge && l.ifname !== env.bridge
  ).length;
}

rootTest(
  "idempotence: concurrent and retried adds make each NIC once",
  async () => {
    const t = new Tally();
    const env = await makeEnv("rid", {
      subnet: `10.232.${1 + randomBelow(250)}.0/24`,
    });
    try {
      // ---- N processes, one add
      for (let round = 0; round < ROUNDS; round++) {
        const vm = `same${round}`;
        const runs = await Promise.all(
          Array.from(
            { length: PROCS },
            () => env.cli(["add", vm, "--nics", "2"], { timeoutMs: 90_000 }),
          ),
        );
        const w = await checkWhole(env, vm, { indices: [0, 1] });
        t.case(`${PROCS} concurrent add ${vm} --nics 2`, [
          ...runs.map((r, i) => exitIs(r, 0, `process ${i}`)),
          ...sameJson(runs, vm),
          ...w.problems,
          (await bridgePorts(env)) === 2
            ? null
            : `bridge ports: ${await bridgePorts(env)}`,
        ]);
        const again = await env.cli(["add", vm, "--nics", "2"]);
        t.case(`a later retry of ${vm} returns the same JSON`, [
          exitIs(again, 0, "retry"),
          ...sameJson([runs.find((r) => r.code === 0) ?? again, again], vm),
        ]);
        const d = await env.cli(["delete", vm]);
        t.case(`${vm} deleted`, [
          exitIs(d, 0, "delete"),
          ...await checkGone(env, vm),
        ]);
        t.leaked(vm, await env.leaks());
      }

      // ---- N processes, some SIGKILLed mid-add, then a retry
      for (let round = 0; round < ROUNDS * 2; round++) {
        const vm = `kill${round}`;
        const victims = new Set([randomBelow(PROCS), randomBelow(PROCS)]);
        const runs = await Promise.all(
          Array.from(
            { length: PROCS },
            (_, i) =>
              env.cli(["add", vm, "--nics", "2"], {
                timeoutMs: 90_000,
                ...(victims.has(i)
                  ? {
                    sendSignal: "SIGKILL",
                    signalAfterMs: 60 + randomBelow(600),
                  }
                  : {}),
              }),
          ),
        );
        const killed = runs.filter((r) => r.sent).length;
        const survivors = runs.filter((r) => !r.sent);
        const retry = await env.cli(["add", vm, "--nics", "2"]);
        const w = await checkWhole(env, vm, { indices: [0, 1] });
        t.case(`${PROCS} add ${vm}, ${killed} SIGKILLed, then a retry`, [
          ...survivors.map((r, i) => exitIs(r, 0, `survivor ${i}`)),
          ...runs.filter((r) =>
            r.sent && r.code !== 0 && r.signal !== "SIGKILL"
          )
            .map((r) => `a killed process: ${describe(r)}`),
          exitIs(retry, 0, "retry"),
          ...sameJson([
            ...survivors,
            ...runs.filter((r) => r.code === 0),
            retry,
          ], vm),
          ...w.problems,
          (await bridgePorts(env)) === 2
            ? null
            : `bridge ports: ${await bridgePorts(env)}`,
        ]);
        const d = await env.cli(["delete", vm]);
        t.case(`${vm} deleted`, [
          exitIs(d, 0, "delete"),
          ...await checkGone(env, vm),
        ]);
        t.leaked(vm, await env.leaks());
      }

      // ---- --nics 1 and --nics 2 at once: NIC 0 is one object
      {
        const vm = "mixed";
        const runs = await Promise.all(
          Array.from(
            { length: PROCS },
            (_, i) =>
              env.cli(["add", vm, "--nics", String(1 + (i % 2))], {
                timeoutMs: 90_000,
              }),
          ),
        );
        const nic0s = runs.filter((r) => r.code === 0).map((r) =>
          JSON.stringify((JSON.parse(r.stdout) as NicJson[])[0])
        );
        const w = await checkWhole(env, vm, { indices: [0, 1] });
        t.case("--nics 1 and --nics 2 at once", [
          ...runs.map((r, i) => exitIs(r, 0, `process ${i}`)),
          new Set(nic0s).size === 1
            ? null
            : `NIC 0 differs:\n${[...new Set(nic0s)].join("\n")}`,
          ...sameJson(runs.filter((_, i) => i % 2 === 1), "--nics 2"),
          ...w.problems,
        ]);

        // ---- a hot-add of one index from many processes
        const hot = await Promise.all(
          Array.from(
            { length: PROCS },
            () => env.cli(["add", vm, "--index", "5"], { timeoutMs: 90_000 }),
          ),
        );
        const w5 = await checkWhole(env, vm, { indices: [0, 1, 5] });
        t.case(`${PROCS} concurrent add ${vm} --index 5`, [
          ...hot.map((r, i) => exitIs(r, 0, `process ${i}`)),
          ...sameJson(hot, "--index 5"),
          ...w5.problems,
        ]);
        const d = await env.cli(["delete", vm]);
        t.case(`${vm} deleted`, [
          exitIs(d, 0, "delete"),
          ...await checkGone(env, vm),
        ]);
        t.leaked(vm, await env.leaks());
      }

      // ---- the library in one process beside CLI processes
      {
        const vm = "lib";
        const p = await env.open();
        try {
          const [lib, cli] = await Promise.all([
            Promise.allSettled(
              [0, 1, 2].map(() => p.add(vm, {}, {}, {})),
            ),
            Promise.all(
              [0, 1, 2].map(() => env.cli(["add", vm, "--nics", "2"])),
            ),
          ]);
          const libOut = lib.map((r) =>
            r.status === "fulfilled"
              ? JSON.stringify(r.value)
              : `rejected: ${(r.reason as Error).message}`
          );
          const cliOut = cli.map((r) =>
            r.code === 0 ? JSON.stringify(JSON.parse(r.stdout)) : describe(r)
          );
          const all = new Set([...libOut, ...cliOut]);
          const w = await checkWhole(env, vm, { indices: [0, 1] });
          t.case("library and CLI adds at once", [
            all.size === 1 ? null : `results differ:\n${[...all].join("\n")}`,
            ...w.problems,
          ]);
          const del = await p.delete([vm]);
          t.case("lib deleted", [
            del.deleted.includes(vm) ? null : JSON.stringify(del),
            ...await checkGone(env, vm),
          ]);
        } finally {
          p.close();
        }
        t.leaked(vm, await env.leaks());
      }
    } finally {
      t.print("idempotence");
      t.leaked("cleanup", await env.cleanup());
    }
    assert.deepEqual(t.failures, []);
    assert.deepEqual(t.leaks, []);
  },
);
