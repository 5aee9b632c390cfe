import assert from "node:assert/strict";
import { join } from "node:path";
import { rootTest } from "../support/harness.ts";
import {
  defineHook,
  HookConfigError,
  HookError,
  type HookInput,
  HookRunner,
  HookTimeoutError,
  type TsHook,
} from "../../src/hooks/mod.ts";
import {
  isAlive,
  processState,
  readLines,
  withHooksDir,
  writeScript,
} from "./hook_fixtures.ts";

const ADD_CTX: HookInput = {
  operation: "add",
  vmId: "vm1",
  index: 0,
  network: "vmnic",
  netnsPath: "/var/run/netns/vmnic-vm1",
};

/** A TS hook that appends `<name> <event>` to `log`. */
function loggingTsHook(log: string, name: string, extra: Partial<TsHook> = {}) {
  return defineHook({
    async run(ctx) {
      await Deno.writeTextFile(log, `${name} ${ctx.event}\n`, { append: true });
    },
    ...extra,
  });
}

rootTest("TS and exec hooks run merged in file-name order", async () => {
  await withHooksDir(async (dir, scratch) => {
    const log = join(scratch, "log");
    for (const name of ["10-first", "30-middle", "50-last"]) {
      await writeScript(dir, name, `echo "$(basename "$0") $1" >> ${log}`);
    }
    const runner = new HookRunner({
      hooksDir: dir,
      tsHooks: {
        "40-ts.ts": loggingTsHook(log, "40-ts.ts"),
        "20-ts.ts": loggingTsHook(log, "20-ts.ts"),
      },
    });
    assert.deepEqual(
      (await runner.list()).map((h) => `${h.name}:${h.kind}`),
      [
        "10-first:exec",
        "20-ts.ts:ts",
        "30-middle:exec",
        "40-ts.ts:ts",
        "50-last:exec",
      ],
    );
    const reports = await runner.run("beforeAdd", ADD_CTX);
    assert.deepEqual(reports.map((r) => r.name), [
      "10-first",
      "20-ts.ts",
      "30-middle",
      "40-ts.ts",
      "50-last",
    ]);
    assert.deepEqual(await readLines(log), [
      "10-first beforeAdd",
      "20-ts.ts beforeAdd",
      "30-middle beforeAdd",
      "40-ts.ts beforeAdd",
      "50-last beforeAdd",
    ]);
  });
});

rootTest(
  "an exec hook gets the event as argv[1] and the context JSON on stdin",
  async () => {
    await withHooksDir(async (dir, scratch) => {
      const out = join(scratch, "ctx.json");
      const argv = join(scratch, "argv");
      await writeScript(
        dir,
        "10-capture",
        `printf '%s\\n' "$@" > ${argv}\ncat > ${out}\necho "said hello"\necho "warned" >&2`,
      );
      const runner = new HookRunner({ hooksDir: dir });
      const before = await runner.run("beforeAdd", ADD_CTX);
      assert.deepEqual(await readLines(argv), ["beforeAdd"]);
      // Before an add the unknown fields are absent, not null.
      assert.deepEqual(JSON.parse(await Deno.readTextFile(out)), {
        ...ADD_CTX,
        event: "beforeAdd",
      });
      assert.equal(before[0].stdout, "said hello\n");
      assert.equal(before[0].stderr, "warned\n");

      const after: HookInput = {
        ...ADD_CTX,
        ifName: "eth0",
        tap: "tap0",
        mac: "0a:58:0a:58:00:05",
        ips: [{
          address: "10.88.0.5",
          prefix: 16,
          gateway: "10.88.0.1",
          version: 4,
        }],
        numQueues: 2,
        queueSize: 512,
        mtu: 1500,
        cniResult: { cniVersion: "1.0.0", interfaces: [{ name: "eth0" }] },
      };
      await runner.run("afterAdd", after);
      assert.deepEqual(await readLines(argv), ["afterAdd"]);
      assert.deepEqual(JSON.parse(await Deno.readTextFile(out)), {
        ...after,
        event: "afterAdd",
      });
    });
  },
);

rootTest(
  "a failing exec hook throws a HookError naming it, with exit code and stderr; later hooks don't run",
  async () => {
    await withHooksDir(async (dir, scratch) => {
      const marker = join(scratch, "later-ran");
      await writeScript(
        dir,
        "10-fails",
        `echo partial\necho "no capacity on $1" >&2\nexit 3`,
      );
      await writeScript(dir, "20-later", `touch ${marker}`);
      const runner = new HookRunner({ hooksDir: dir });
      await assert.rejects(runner.run("beforeAdd", ADD_CTX), (e: unknown) => {
        assert.ok(e instanceof HookError);
        assert.ok(!(e instanceof HookTimeoutError));
        assert.equal(e.hook, "10-fails");
        assert.equal(e.kind, "exec");
        assert.equal(e.event, "beforeAdd");
        assert.equal(e.exitCode, 3);
        assert.equal(e.stderr, "no capacity on beforeAdd\n");
        assert.equal(e.stdout, "partial\n");
        assert.match(e.message, /10-fails.*code 3.*no capacity/);
        return true;
      });
      await assert.rejects(Deno.stat(marker), Deno.errors.NotFound);
    });
  },
);

rootTest(
  "a hanging exec hook is killed with its children at its timeout, and reaped",
  async () => {
    await withHooksDir(async (dir, scratch) => {
      const pids = join(scratch, "pids");
      // The shell and a child it waits for: both must be gone afterwards.
      await writeScript(
        dir,
        "10-hangs",
        `echo $$ > ${pids}\nsleep 60 &\necho $! >> ${pids}\nwait`,
      );
      const runner = new HookRunner({ hooksDir: dir, defaultTimeoutMs: 300 });
      const t0 = performance.now();
      await assert.rejects(runner.run("afterRemove", ADD_CTX), (e: unknown) => {
        assert.ok(e instanceof HookTimeoutError);
        assert.equal(e.hook, "10-hangs");
        assert.equal(e.timeoutMs, 300);
        assert.equal(e.signal, "SIGKILL");
        assert.match(e.message, /10-hangs.*timed out after 300 ms; killed/);
        return true;
      });
      const took = performance.now() - t0;
      assert.ok(took >= 290 && took < 3000, `took ${took} ms`);
      const [shell, sleeper] = (await readLines(pids)).map(Number);
      assert.ok(shell > 0 && sleeper > 0);
      // The shell is our child: reaped, so not even a zombie.
      assert.equal(await processState(shell), null, `shell ${shell} remains`);
      for (let i = 0; i < 50 && await isAlive(sleeper); i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(await isAlive(sleeper), false, `sleep ${sleeper} survived`);
    });
  },
);

rootTest(
  "a vmnic-timeout header overrides the default for that executable",
  async () => {
    await withHooksDir(async (dir) => {
      await writeScript(dir, "10-slow", `# vmnic-timeout: 0.2\nsleep 30`);
      await writeScript(dir, "20-bad", `# vmnic-timeout: forever\nexit 0`);
      const runner = new HookRunner({ hooksDir: dir });
      await assert.rejects(
        runner.list(),
        (e: unknown) =>
          e instanceof HookConfigError && e.message.includes("20-bad") &&
          e.message.includes("vmnic-timeout"),
      );
      await Deno.remove(join(dir, "20-bad"));
      assert.equal((await runner.list())[0].timeoutMs, 200);
      await assert.rejects(
        runner.run("beforeAdd", ADD_CTX),
        (e: unknown) => e instanceof HookTimeoutError && e.timeoutMs === 200,
      );
    });
  },
);

rootTest(
  "a vmnic-events header limits the events an executable runs at",
  async () => {
    await withHooksDir(async (dir, scratch) => {
      const log = join(scratch, "log");
      await writeScript(
        dir,
        "10-adds",
        `# vmnic-events: beforeAdd, afterAdd\necho "$1" >> ${log}`,
      );
      const runner = new HookRunner({ hooksDir: dir });
      assert.deepEqual((await runner.list())[0].events, [
        "beforeAdd",
        "afterAdd",
      ]);
      for (
        const ev of [
          "beforeAdd",
          "afterAdd",
          "beforeRemove",
          "afterRemove",
        ] as const
      ) {
        await runner.run(ev, ADD_CTX);
      }
      assert.deepEqual(await readLines(log), ["beforeAdd", "afterAdd"]);
    });
  },
);

Deno.test("a hanging TS hook is abandoned with HookTimeoutError and its signal aborts", async () => {
  let aborted: unknown;
  let release!: () => void;
  const runner = new HookRunner({
    hooksDir: null,
    tsHooks: {
      "hangs.ts": defineHook({
        timeoutMs: 100,
        run: (_ctx, signal) =>
          new Promise<void>((resolve) => {
            release = resolve;
            signal.addEventListener("abort", () => aborted = signal.reason);
          }),
      }),
    },
  });
  const t0 = performance.now();
  await assert.rejects(runner.run("beforeRemove", ADD_CTX), (e: unknown) => {
    assert.ok(e instanceof HookTimeoutError);
    assert.equal(e.hook, "hangs.ts");
    assert.equal(e.kind, "ts");
    assert.match(e.message, /hangs\.ts.*timed out after 100 ms; abandoned/);
    return true;
  });
  assert.ok(performance.now() - t0 < 1000);
  assert.ok(aborted instanceof HookTimeoutError);
  release();
});

Deno.test("a throwing TS hook becomes a HookError naming it, with the cause", async () => {
  const cause = new Error("quota exceeded");
  const runner = new HookRunner({
    hooksDir: null,
    tsHooks: {
      "quota.ts": defineHook({
        run: () => {
          throw cause;
        },
      }),
    },
  });
  await assert.rejects(runner.run("beforeAdd", ADD_CTX), (e: unknown) => {
    assert.ok(e instanceof HookError);
    assert.equal(e.hook, "quota.ts");
    assert.equal(e.kind, "ts");
    assert.equal(e.cause, cause);
    assert.match(e.message, /quota\.ts.*beforeAdd.*quota exceeded/);
    return true;
  });
});

Deno.test("TS hooks run only at their events, and see a frozen context", async () => {
  const seen: string[] = [];
  const runner = new HookRunner({
    hooksDir: null,
    tsHooks: {
      "a.ts": defineHook({
        events: ["afterAdd", "afterRemove"],
        run: (ctx) => {
          seen.push(`a ${ctx.event}`);
        },
      }),
      "b.ts": defineHook({
        run: (ctx) => {
          seen.push(`b ${ctx.event}`);
          assert.throws(() => {
            (ctx as { vmId: string }).vmId = "other";
          }, TypeError);
        },
      }),
    },
  });
  assert.deepEqual((await runner.list()).map((h) => [h.name, h.events]), [
    ["a.ts", ["afterAdd", "afterRemove"]],
    ["b.ts", ["beforeAdd", "afterAdd", "beforeRemove", "afterRemove"]],
  ]);
  for (
    const ev of [
      "beforeAdd",
      "afterAdd",
      "beforeRemove",
      "afterRemove",
    ] as const
  ) {
    await runner.run(ev, ADD_CTX);
  }
  assert.deepEqual(seen, [
    "b beforeAdd",
    "a afterAdd",
    "b afterAdd",
    "b beforeRemove",
    "a afterRemove",
    "b afterRemove",
  ]);
});

Deno.test("an idle TS hook (active() false) is listed but neither run nor counted, asked once per operation", async () => {
  const seen: string[] = [];
  let on = false;
  let asked = 0;
  const runner = new HookRunner({
    hooksDir: null,
    tsHooks: {
      "idle.ts": defineHook({
        active: () => (asked++, on),
        run: (ctx) => {
          seen.push(ctx.event);
        },
      }),
    },
  });
  assert.deepEqual(
    (await runner.list()).map((h) => [h.name, h.idle]),
    [["idle.ts", true]],
  );
  asked = 0;
  const off = runner.snapshot();
  assert.equal(off.has("afterAdd"), false);
  await off.run("beforeAdd", ADD_CTX);
  await off.run("afterAdd", ADD_CTX);
  assert.deepEqual(off.list().map((h) => h.name), ["idle.ts"]);
  on = true;
  const live = runner.snapshot();
  assert.equal(live.has("afterAdd"), true);
  await live.run("afterAdd", ADD_CTX);
  await live.run("afterRemove", ADD_CTX);
  assert.deepEqual(seen, ["afterAdd", "afterRemove"]);
  assert.equal(asked, 3, "once per snapshot that runs hooks, once per listing");
  assert.equal((await runner.list())[0].idle, undefined, "active: no mark");
});

Deno.test("a TS hook's active() that throws fails the operation's hooks naming it; a non-function is refused up front", async () => {
  const runner = new HookRunner({
    hooksDir: null,
    tsHooks: {
      "broken.ts": defineHook({
        active: () => {
          throw new Error("no settings file");
        },
        run: () => {},
      }),
    },
  });
  assert.deepEqual((await runner.list()).map((h) => h.name), ["broken.ts"]);
  assert.throws(
    () => runner.snapshot().has("beforeAdd"),
    (e) =>
      e instanceof HookConfigError && /broken\.ts.*no settings/.test(e.message),
  );
  await assert.rejects(
    () => runner.run("beforeAdd", ADD_CTX),
    HookConfigError,
  );
  assert.throws(
    () =>
      new HookRunner({
        hooksDir: null,
        tsHooks: {
          "odd.ts": { active: true, run: () => {} } as unknown as TsHook,
        },
      }),
    HookConfigError,
  );
  // A non-boolean answer (a variable's value, say) is no answer: refused,
  // never read as "idle", which would skip a veto hook silently.
  const vague = new HookRunner({
    hooksDir: null,
    tsHooks: {
      "vague.ts": {
        active: () => "/etc/deny.json",
        run: () => {},
      } as unknown as TsHook,
    },
  });
  assert.throws(
    () => vague.snapshot().has("beforeAdd"),
    (e) => e instanceof HookConfigError && /true or false/.test(e.message),
  );
});

Deno.test("badly declared TS hooks are refused up front", () => {
  assert.throws(
    () =>
      new HookRunner({
        tsHooks: { "x.ts": { events: ["onBoot" as "afterAdd"], run() {} } },
      }),
    (e: unknown) =>
      e instanceof HookConfigError && /x\.ts.*onBoot/.test(e.message),
  );
  assert.throws(
    () => new HookRunner({ tsHooks: { "y.ts": {} as TsHook } }),
    HookConfigError,
  );
  assert.throws(
    () => new HookRunner({ tsHooks: { "z.ts": { timeoutMs: -1, run() {} } } }),
    HookConfigError,
  );
});

Deno.test("a missing hooks dir means no executable hooks", async () => {
  const scratch = await Deno.makeTempDir({ prefix: "vmnict-hooks-" });
  try {
    const runner = new HookRunner({
      hooksDir: join(scratch, "does-not-exist"),
      tsHooks: { "t.ts": defineHook({ run() {} }) },
    });
    assert.deepEqual((await runner.list()).map((h) => h.name), ["t.ts"]);
    assert.deepEqual(
      (await runner.run("beforeAdd", ADD_CTX)).map((r) => r.name),
      ["t.ts"],
    );
  } finally {
    await Deno.remove(scratch, { recursive: true });
  }
});

rootTest(
  "a snapshot runs the hooks of its moment; the runner reads the dir again each time",
  async () => {
    await withHooksDir(async (dir, scratch) => {
      const log = join(scratch, "log");
      await writeScript(
        dir,
        "10-first",
        `echo "$(basename "$0") $1" >> ${log}`,
      );
      const runner = new HookRunner({ hooksDir: dir });
      const snap = runner.snapshot();
      await writeScript(
        dir,
        "20-later",
        `echo "$(basename "$0") $1" >> ${log}`,
      );
      assert.ok(snap.has("afterAdd"));
      assert.deepEqual(snap.list().map((h) => h.name), ["10-first"]);
      await snap.run("afterAdd", ADD_CTX);
      assert.deepEqual(await readLines(log), ["10-first afterAdd"]);
      await runner.run("afterAdd", ADD_CTX);
      assert.deepEqual(await readLines(log), [
        "10-first afterAdd",
        "10-first afterAdd",
        "20-later afterAdd",
      ]);
      // Made unsafe after a snapshot took it: refused before it would run,
      // by that snapshot as by the next operation.
      const taken = runner.snapshot();
      await Deno.chmod(join(dir, "20-later"), 0o777);
      await assert.rejects(() => taken.run("afterAdd", ADD_CTX), /20-later/);
      await assert.rejects(() => runner.run("afterAdd", ADD_CTX), /20-later/);
      // Removed after a snapshot took it: not run, and no failure.
      await Deno.chmod(join(dir, "20-later"), 0o755);
      const before = runner.snapshot();
      await Deno.remove(join(dir, "20-later"));
      const reports = await before.run("afterAdd", ADD_CTX);
      assert.deepEqual(reports.map((r) => r.name), ["10-first"]);
    });
  },
);
