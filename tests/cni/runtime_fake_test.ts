/**
 * CniRuntime against fake plugins (shell scripts): only for what real plugins
 * cannot be made to do (hang, print garbage, fail in odd ways, speak 1.1) and
 * to observe exactly what a plugin receives (env, stdin, order).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  CniExecError,
  CniInvalidArgumentError,
  CniPluginError,
  CniPluginNotFoundError,
  CniRuntime,
  CniVersionError,
  FileAttachmentCache,
  formatCniArgs,
  MAX_PLUGIN_OUTPUT_BYTES,
  type NetworkConfigList,
  parseConfList,
} from "../../src/cni/mod.ts";
import { run } from "../support/harness.ts";
import { FAKE_VERSIONS, withTempDir, writeFakePlugin } from "./_helpers.ts";

const NETNS = "/var/run/netns/vmnic-fake-none";
const rt = { containerId: "vm-fake-1", netns: NETNS, ifName: "eth0" };

interface Call {
  command: string;
  plugin: string;
  stdin: Record<string, unknown>;
  env: {
    containerId: string;
    netns: string;
    ifName: string;
    args: string;
    path: string;
    extra: string;
  };
}

interface Fixture {
  dir: string;
  bin: string;
  log: string;
  cache: FileAttachmentCache;
  runtime: (
    opts?: { timeoutMs?: number; killProcessGroup?: boolean },
  ) => CniRuntime;
  calls: (command?: string) => Promise<Call[]>;
  /** A plugin that logs what it gets and answers `result` to ADD. */
  rec: (name: string, result?: object, versions?: string) => Promise<void>;
  list: (plugins: object[], extra?: object) => NetworkConfigList;
}

function resultFor(address: string, version = "1.0.0") {
  return {
    cniVersion: version,
    interfaces: [{ name: "eth0", sandbox: NETNS }],
    ips: [{
      address,
      interface: 0,
      ...(version < "1.0.0" ? { version: "4" } : {}),
    }],
    routes: [],
    dns: {},
  };
}

async function withFakes(fn: (f: Fixture) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    const bin = join(dir, "bin"), log = join(dir, "log");
    await Deno.mkdir(bin);
    await Deno.mkdir(log);
    const cache = new FileAttachmentCache(join(dir, "cache"));
    const f: Fixture = {
      dir,
      bin,
      log,
      cache,
      runtime: (opts = {}) =>
        new CniRuntime({
          binDirs: [join(dir, "nonexistent"), bin],
          cache,
          env: { FAKE_LOG: log, FAKE_EXTRA: "extra-env" },
          ...opts,
        }),
      calls: async (command) => {
        const names: string[] = [];
        for await (const e of Deno.readDir(log)) {
          if (e.name.endsWith(".json")) names.push(e.name);
        }
        names.sort();
        const out: Call[] = [];
        for (const n of names) {
          const [, cmd, ...rest] = n.replace(/\.json$/, "").split("-");
          if (command && cmd !== command) continue;
          const text = await Deno.readTextFile(join(log, n));
          const envLine = await Deno.readTextFile(
            join(log, n.replace(/\.json$/, ".env")),
          );
          const [, containerId, netns, ifName, args, path, extra] = envLine
            .trimEnd().split("|");
          out.push({
            command: cmd,
            plugin: rest.join("-"),
            stdin: JSON.parse(text),
            env: { containerId, netns, ifName, args, path, extra },
          });
        }
        return out;
      },
      rec: async (
        name,
        result = resultFor("10.233.50.2/24"),
        versions = FAKE_VERSIONS,
      ) => {
        await writeFakePlugin(
          bin,
          name,
          `n=$(ls "$FAKE_LOG" | grep -c '\\.json$')
f="$FAKE_LOG/$(printf %03d "$n")-$CNI_COMMAND-$(basename "$0")"
cat > "$f.json"
printf '%s|%s|%s|%s|%s|%s|%s\\n' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_ARGS" "$CNI_PATH" "$FAKE_EXTRA" > "$f.env"
case "$CNI_COMMAND" in
VERSION) echo '${versions}' ;;
ADD) echo '${JSON.stringify(result)}' ;;
esac
exit 0`,
        );
      },
      list: (plugins, extra = {}) =>
        parseConfList({
          cniVersion: "1.0.0",
          name: "fakenet",
          plugins,
          ...extra,
        }, "test"),
    };
    await fn(f);
  });
}

Deno.test("ADD chains prevResult, injects name/cniVersion, filters capability args, sets the CNI env", async () => {
  await withFakes(async (f) => {
    await f.rec("rec1", resultFor("10.233.50.2/24"));
    await f.rec("rec2", resultFor("10.233.50.3/24"));
    const list = f.list([
      { type: "rec1", capabilities: { mac: true }, custom: { a: 1 } },
      { type: "rec2", capabilities: { portMappings: true, ips: false } },
    ]);
    const runtime = f.runtime();
    const capabilityArgs = {
      mac: "0a:58:0a:e9:32:09",
      ips: ["10.233.50.9/24"],
      portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }],
    };
    const args: [string, string][] = [["IgnoreUnknown", "1"], [
      "IP",
      "10.233.50.9",
    ]];
    const result = await runtime.addNetworkList(list, {
      ...rt,
      args,
      capabilityArgs,
    });
    assert.deepEqual(result.ips, [{ address: "10.233.50.3/24", interface: 0 }]);

    const adds = await f.calls("ADD");
    assert.deepEqual(adds.map((c) => c.plugin), ["rec1", "rec2"]);
    assert.deepEqual(adds[0].stdin, {
      type: "rec1",
      capabilities: { mac: true },
      custom: { a: 1 },
      name: "fakenet",
      cniVersion: "1.0.0",
      runtimeConfig: { mac: "0a:58:0a:e9:32:09" },
    });
    assert.deepEqual(adds[1].stdin.runtimeConfig, {
      portMappings: capabilityArgs.portMappings,
    });
    assert.deepEqual(adds[1].stdin.prevResult, resultFor("10.233.50.2/24"));
    assert.deepEqual(adds[0].env, {
      containerId: "vm-fake-1",
      netns: NETNS,
      ifName: "eth0",
      args: "IgnoreUnknown=1;IP=10.233.50.9",
      path: `${join(f.dir, "nonexistent")}:${f.bin}`,
      extra: "extra-env",
    });

    // The cache holds the exact config text and the result.
    const cached = await f.cache.get({
      network: "fakenet",
      containerId: rt.containerId,
      ifName: "eth0",
    });
    assert.equal(cached?.config, list.raw);
    assert.deepEqual(cached?.result, result);
    assert.deepEqual(cached?.args, args);

    // A second ADD does not ask VERSION again (answers cached per binary).
    await runtime.addNetworkList(list, { ...rt, containerId: "vm-fake-2" });
    const versions = await f.calls("VERSION");
    assert.deepEqual(versions.map((c) => c.plugin), ["rec1", "rec2"]);
    assert.deepEqual(versions[0].stdin, { cniVersion: "1.0.0" });
  });
});

Deno.test("an onSpawn observer that throws neither fails the plugin's run nor leaves it unwaited", async () => {
  await withFakes(async (f) => {
    await f.rec("rec1", resultFor("10.233.50.4/24"));
    const seen: number[] = [];
    const result = await f.runtime().addNetworkList(
      f.list([{ type: "rec1" }]),
      {
        ...rt,
        onSpawn: (pid) => {
          seen.push(pid);
          throw new Error("cannot note the pid");
        },
      },
    );
    assert.deepEqual(result.ips, [{ address: "10.233.50.4/24", interface: 0 }]);
    assert.ok(seen.length >= 1, "told of the plugin's pid");
    assert.equal((await f.calls("ADD")).length, 1);
  });
});

Deno.test("DEL runs in reverse with the cached result, then drops the entry; 0.4.0 gets per-IP versions", async () => {
  await withFakes(async (f) => {
    await f.rec("rec1", resultFor("10.233.51.2/24", "0.4.0"));
    await f.rec("rec2", resultFor("10.233.51.3/24", "0.4.0"));
    const list = f.list([{ type: "rec1" }, { type: "rec2" }], {
      cniVersion: "0.4.0",
    });
    const runtime = f.runtime();
    const result = await runtime.addNetworkList(list, rt);
    assert.equal(result.cniVersion, "1.0.0"); // converted
    assert.deepEqual(result.ips, [{ address: "10.233.51.3/24", interface: 0 }]);
    await runtime.delNetworkList(list, { ...rt, netns: "" });
    const dels = await f.calls("DEL");
    assert.deepEqual(dels.map((c) => c.plugin), ["rec2", "rec1"]);
    for (const d of dels) {
      assert.deepEqual(
        d.stdin.prevResult,
        resultFor("10.233.51.3/24", "0.4.0"),
      );
      assert.equal(d.env.netns, "");
    }
    assert.equal(
      await f.cache.get({
        network: "fakenet",
        containerId: rt.containerId,
        ifName: "eth0",
      }),
      null,
    );
    // DEL again (nothing cached) still runs, without prevResult: DEL is idempotent.
    await runtime.delNetworkList(list, rt);
    const again = (await f.calls("DEL")).slice(2);
    assert.deepEqual(again.map((c) => c.plugin), ["rec2", "rec1"]);
    assert.equal(again[0].stdin.prevResult, undefined);
  });
});

Deno.test("CHECK: in order with the cached result; skipped when disabled or before 0.4.0", async () => {
  await withFakes(async (f) => {
    await f.rec("rec1");
    const list = f.list([{ type: "rec1" }]);
    const runtime = f.runtime();
    await assert.rejects(
      () => runtime.checkNetworkList(list, rt),
      /no result given or cached/,
    );
    const result = await runtime.addNetworkList(list, rt);
    assert.equal(await runtime.checkNetworkList(list, rt), "done");
    const checks = await f.calls("CHECK");
    assert.equal(checks.length, 1);
    assert.deepEqual(checks[0].stdin.prevResult, result);
    assert.equal(
      await runtime.checkNetworkList(
        f.list([{ type: "rec1" }], { disableCheck: true }),
        rt,
      ),
      "skipped",
    );
    assert.equal(
      await runtime.checkNetworkList(
        f.list([{ type: "rec1" }], { cniVersion: "0.3.1" }),
        rt,
      ),
      "skipped",
    );
    assert.equal((await f.calls("CHECK")).length, 1);
  });
});

/** A marker unique to one test: `sleep <marker>` names its processes. */
function uniqueMarker(seconds: number): string {
  return `${seconds}.${crypto.getRandomValues(new Uint32Array(1))[0]}`;
}

/**
 * A plugin that hangs on ADD with a background child holding its stdout.
 * It writes its own PID to `<pidDir>/plugin` and the child's to
 * `<pidDir>/child` first.
 */
async function writeHangPlugin(
  bin: string,
  marker: string,
  pidDir: string,
): Promise<void> {
  await writeFakePlugin(
    bin,
    "hang",
    `[ "$CNI_COMMAND" = VERSION ] && { echo '${FAKE_VERSIONS}'; exit 0; }
[ "$CNI_COMMAND" = DEL ] && exit 0
echo $$ > "${pidDir}/plugin"
sleep ${marker} &
echo $! > "${pidDir}/child"
sleep ${marker}`,
  );
}

/** Waits up to 3 s for every `sleep <marker>` to be gone; returns the survivors. */
async function survivors(marker: string): Promise<string[]> {
  const deadline = Date.now() + 3000;
  let alive: string[] = [];
  do {
    alive = await processesWithArg(marker);
    if (!alive.length) break;
    await new Promise((r) => setTimeout(r, 50));
  } while (Date.now() < deadline);
  return alive;
}

/**
 * Whether process `pid` is alive: `ps` finds it (it reads /proc/<pid>) and
 * it is not a zombie (a killed orphan waits there for its reaper).
 */
async function isAlive(pid: number): Promise<boolean> {
  const r = await run("ps", ["-o", "stat=", "-p", String(pid)]);
  return r.code === 0 && r.stdout.trim() !== "" &&
    !r.stdout.trim().startsWith("Z");
}

/** The PID a hang plugin wrote to `<pidDir>/<who>`. */
async function pidOf(pidDir: string, who: "plugin" | "child") {
  const text = await Deno.readTextFile(join(pidDir, who));
  const pid = Number(text.trim());
  assert.ok(Number.isInteger(pid) && pid > 1, `${who} pid: ${text}`);
  return pid;
}

/** Kills what a test left by PID (best effort: it may be gone). */
async function killAll(marker: string): Promise<void> {
  for (const pid of await processesWithArg(marker)) {
    try {
      Deno.kill(Number(pid), "SIGKILL");
    } catch { /* gone meanwhile */ }
  }
}

const isTimeout = (e: unknown) =>
  e instanceof CniExecError && e.kind === "timeout" && e.plugin === "hang" &&
  e.command === "ADD" &&
  /timed out after 300 ms and was killed/.test(e.message);

for (
  const [what, opts] of [
    ["by default", {}],
    ["with killProcessGroup: true", { killProcessGroup: true }],
  ] as const
) {
  Deno.test(`a hanging plugin is killed at the timeout with what it forked (${what})`, async () => {
    await withFakes(async (f) => {
      const marker = uniqueMarker(20 + Math.floor(Math.random() * 9));
      await writeHangPlugin(f.bin, marker, f.dir);
      try {
        const t0 = performance.now();
        await assert.rejects(
          () =>
            f.runtime({ timeoutMs: 300, ...opts }).addNetworkList(
              f.list([{ type: "hang" }]),
              rt,
            ),
          isTimeout,
        );
        assert.ok(performance.now() - t0 < 3000, "the timeout bounds the call");
        const plugin = await pidOf(f.dir, "plugin");
        const child = await pidOf(f.dir, "child");
        // The whole process group went: the plugin, its background child
        // (which held stdout) and its foreground one.
        assert.deepEqual(await survivors(marker), []);
        assert.equal(await isAlive(plugin), false, `plugin ${plugin} alive`);
        assert.equal(await isAlive(child), false, `child ${child} alive`);
      } finally {
        await killAll(marker);
      }
    });
  });
}

Deno.test("killProcessGroup: false kills only the plugin at the timeout, as libcni; what it forked is not waited for", async () => {
  await withFakes(async (f) => {
    const marker = uniqueMarker(20 + Math.floor(Math.random() * 9));
    await writeHangPlugin(f.bin, marker, f.dir);
    try {
      const t0 = performance.now();
      await assert.rejects(
        () =>
          f.runtime({ timeoutMs: 300, killProcessGroup: false })
            .addNetworkList(f.list([{ type: "hang" }]), rt),
        isTimeout,
      );
      assert.ok(performance.now() - t0 < 3000, "the timeout bounds the call");
      assert.equal(await isAlive(await pidOf(f.dir, "plugin")), false);
      // What it forked is not ours to kill in this mode...
      assert.equal(await isAlive(await pidOf(f.dir, "child")), true);
      assert.ok((await processesWithArg(marker)).length > 0);
    } finally {
      // ...so the test removes what it made, by PID.
      await killAll(marker);
    }
  });
});

for (
  const [what, opts] of [
    ["by default", {}],
    ["with killProcessGroup: false", { killProcessGroup: false }],
  ] as const
) {
  Deno.test(`a plugin that exits 0 but leaves a child holding stdout succeeds at once (${what})`, async () => {
    await withFakes(async (f) => {
      const marker = uniqueMarker(30);
      const result = resultFor("10.233.52.2/24");
      await writeFakePlugin(
        f.bin,
        "leaky",
        `[ "$CNI_COMMAND" = VERSION ] && { echo '${FAKE_VERSIONS}'; exit 0; }
[ "$CNI_COMMAND" = DEL ] && exit 0
sleep ${marker} &
echo '${JSON.stringify(result)}'
exit 0`,
      );
      try {
        // The default 60 s timeout: a wait for the pipes would show.
        const runtime = f.runtime(opts);
        const list = f.list([{ type: "leaky" }]);
        // Plugin VERSION answers cached first: the ADD alone is timed.
        await runtime.versionInfo("leaky");
        const t0 = performance.now();
        const got = await runtime.addNetworkList(list, rt);
        const ms = performance.now() - t0;
        assert.deepEqual(got.ips, [{
          address: "10.233.52.2/24",
          interface: 0,
        }]);
        assert.ok(ms < 1000, `took ${ms.toFixed(0)} ms`);
        // The child really held stdout past the plugin's exit: it still runs.
        assert.equal((await processesWithArg(marker)).length, 1);
      } finally {
        await killAll(marker);
      }
    });
  });
}

/** PIDs of processes whose command line is exactly `sleep <arg>` (pgrep only reads). */
async function processesWithArg(arg: string): Promise<string[]> {
  const r = await run("pgrep", ["-f", "-x", `sleep ${arg}`]);
  return r.stdout.split("\n").filter(Boolean);
}

Deno.test("plugin failures each get their own clear error", async () => {
  await withFakes(async (f) => {
    const v =
      `[ "$CNI_COMMAND" = VERSION ] && { echo '${FAKE_VERSIONS}'; exit 0; }
[ "$CNI_COMMAND" = DEL ] && exit 0`;
    await writeFakePlugin(f.bin, "garbage", `${v}\necho 'this is not json'`);
    await writeFakePlugin(f.bin, "silent1", `${v}\nexit 1`);
    await writeFakePlugin(f.bin, "empty", `${v}\nexit 0`);
    await writeFakePlugin(
      f.bin,
      "errobj",
      `${v}\necho '{"code":7,"msg":"bad config","details":"field x"}'\necho oops >&2\nexit 3`,
    );
    await writeFakePlugin(
      f.bin,
      "errgarbage",
      `${v}\necho 'panic: nil'\nexit 2`,
    );
    await writeFakePlugin(f.bin, "killed", `${v}\nkill -9 $$`);
    await writeFakePlugin(f.bin, "flood", `${v}\nexec yes`);
    const runtime = f.runtime();
    const add = (type: string) =>
      runtime.addNetworkList(f.list([{ type }]), rt);
    const execErr =
      (kind: string, re: RegExp, extra: (e: CniExecError) => boolean = () =>
        true) =>
      (e: unknown) =>
        e instanceof CniExecError && e.kind === kind && re.test(e.message) &&
        extra(e);

    await assert.rejects(
      () =>
        add("garbage"),
      execErr(
        "invalid-output",
        /garbage ADD: printed output that is not JSON: "this is not json"/,
      ),
    );
    await assert.rejects(
      () =>
        add("silent1"),
      execErr(
        "no-output",
        /silent1 ADD: exited with status 1 and no error message/,
        (e) =>
          e.exitCode === 1,
      ),
    );
    await assert.rejects(
      () => add("empty"),
      execErr("empty-result", /empty ADD: exited 0 but printed no result/),
    );
    await assert.rejects(
      () => add("errgarbage"),
      execErr(
        "invalid-output",
        /exited with status 2; its error message is not JSON: "panic: nil"/,
      ),
    );
    await assert.rejects(
      () => add("killed"),
      execErr(
        "signal",
        /killed ADD: was killed by signal SIGKILL/,
        (e) => e.signal === "SIGKILL",
      ),
    );
    await assert.rejects(
      () => add("flood"),
      execErr(
        "output-too-large",
        new RegExp(`printed more than ${MAX_PLUGIN_OUTPUT_BYTES} bytes`),
      ),
    );
    await assert.rejects(() => add("errobj"), (e: unknown) => {
      assert.ok(e instanceof CniPluginError);
      assert.equal(e.code, 7);
      assert.equal(e.msg, "bad config");
      assert.equal(e.details, "field x");
      assert.equal(e.plugin, "errobj");
      assert.equal(e.command, "ADD");
      assert.equal(e.exitCode, 3);
      assert.equal(e.stderr, "oops\n");
      assert.match(
        e.message,
        /errobj ADD failed \(code 7\): bad config; field x/,
      );
      return true;
    });
  });
});

Deno.test("a plugin that does not speak the list's version is refused before anything runs", async () => {
  await withFakes(async (f) => {
    await f.rec("rec1");
    await f.rec(
      "old",
      undefined,
      `{"cniVersion":"0.4.0","supportedVersions":["0.3.1","0.4.0"]}`,
    );
    const runtime = f.runtime();
    await assert.rejects(
      () =>
        runtime.addNetworkList(f.list([{ type: "rec1" }, { type: "old" }]), rt),
      (e: unknown) =>
        e instanceof CniVersionError && e.plugin === "old" &&
        e.wanted === "1.0.0" &&
        /old \(.*\/old\) does not support CNI version 1\.0\.0; it supports 0\.3\.1, 0\.4\.0/
          .test(e.message),
    );
    assert.deepEqual(await f.calls("ADD"), []);
    assert.deepEqual(await runtime.versionInfo("old"), {
      cniVersion: "0.4.0",
      supportedVersions: ["0.3.1", "0.4.0"],
    });
  });
});

Deno.test("a missing plugin names its type and the dirs searched; nothing runs", async () => {
  await withFakes(async (f) => {
    await f.rec("rec1");
    const runtime = f.runtime();
    await assert.rejects(
      () =>
        runtime.addNetworkList(
          f.list([{ type: "rec1" }, { type: "nosuch" }]),
          rt,
        ),
      (e: unknown) =>
        e instanceof CniPluginNotFoundError && e.pluginType === "nosuch" &&
        e.message.includes(`${join(f.dir, "nonexistent")}, ${f.bin}`),
    );
    assert.deepEqual(await f.calls(), []);
  });
});

Deno.test("a failing plugin mid-list rolls the whole list back (best effort) and rethrows", async () => {
  await withFakes(async (f) => {
    await f.rec("rec1");
    await f.rec("rec3");
    await writeFakePlugin(
      f.bin,
      "fail",
      `[ "$CNI_COMMAND" = VERSION ] && { echo '${FAKE_VERSIONS}'; exit 0; }
[ "$CNI_COMMAND" = DEL ] && { echo '{"code":11,"msg":"del fails too"}'; exit 1; }
echo '{"code":100,"msg":"no luck"}'; exit 1`,
    );
    const runtime = f.runtime();
    await assert.rejects(
      () =>
        runtime.addNetworkList(
          f.list([{ type: "rec1" }, { type: "fail" }, { type: "rec3" }]),
          rt,
        ),
      (e: unknown) => {
        assert.ok(e instanceof CniPluginError);
        assert.equal(e.code, 100);
        assert.ok(e.rollbackError instanceof CniPluginError);
        assert.equal(e.rollbackError.code, 11);
        return true;
      },
    );
    // DEL went through all three in reverse even though "fail" failed it.
    const dels = await f.calls("DEL");
    assert.deepEqual(dels.map((c) => c.plugin), ["rec3", "rec1"]);
    assert.deepEqual(dels[0].stdin.prevResult, resultFor("10.233.50.2/24"));
    assert.equal(
      await f.cache.get({
        network: "fakenet",
        containerId: rt.containerId,
        ifName: "eth0",
      }),
      null,
    );
  });
});

Deno.test("STATUS and GC run only for 1.1.0 lists and plugins that speak 1.1.0", async () => {
  await withFakes(async (f) => {
    await f.rec("rec1");
    await f.rec(
      "only10",
      undefined,
      `{"cniVersion":"1.0.0","supportedVersions":["1.0.0"]}`,
    );
    const runtime = f.runtime();
    const l10 = f.list([{ type: "rec1" }]);
    assert.equal(await runtime.getStatus(l10), "skipped");
    assert.deepEqual(await runtime.gcNetworkList(l10, []), {
      plugins: "skipped",
      staleDeleted: [],
    });
    assert.deepEqual(await f.calls("STATUS"), []);
    assert.deepEqual(await f.calls("GC"), []);

    const l11 = f.list([{ type: "rec1" }, { type: "only10" }], {
      cniVersion: "1.1.0",
    });
    assert.equal(await runtime.getStatus(l11), "ok");
    const statuses = await f.calls("STATUS");
    assert.deepEqual(statuses.map((c) => c.plugin), ["rec1"]);
    assert.deepEqual(statuses[0].stdin, {
      type: "rec1",
      name: "fakenet",
      cniVersion: "1.1.0",
    });
    assert.equal(
      await runtime.getStatus(
        f.list([{ type: "only10" }], { cniVersion: "1.1.0" }),
      ),
      "skipped",
    );

    // Two attachments cached; only one stays valid: GC DELs the other and
    // sends GC with the valid ones.
    const l11rec = f.list([{ type: "rec1" }], { cniVersion: "1.1.0" });
    await runtime.addNetworkList(l11rec, { ...rt, containerId: "keep" });
    await runtime.addNetworkList(l11rec, { ...rt, containerId: "stale" });
    const outcome = await runtime.gcNetworkList(l11rec, [{
      containerId: "keep",
      ifName: "eth0",
    }]);
    assert.deepEqual(outcome, {
      plugins: "done",
      staleDeleted: [{
        network: "fakenet",
        containerId: "stale",
        ifName: "eth0",
      }],
    });
    const dels = await f.calls("DEL");
    assert.deepEqual(dels.map((c) => c.env.containerId), ["stale"]);
    const gcs = await f.calls("GC");
    assert.equal(gcs.length, 1);
    assert.deepEqual(gcs[0].stdin["cni.dev/valid-attachments"], [{
      containerID: "keep",
      ifname: "eth0",
    }]);
    assert.equal(gcs[0].stdin.name, "fakenet");
    assert.notEqual(
      await f.cache.get({
        network: "fakenet",
        containerId: "keep",
        ifName: "eth0",
      }),
      null,
    );
    assert.equal(
      await f.cache.get({
        network: "fakenet",
        containerId: "stale",
        ifName: "eth0",
      }),
      null,
    );
    // disableGC: no plugin GC.
    assert.equal(
      (await runtime.gcNetworkList(
        f.list([{ type: "rec1" }], { cniVersion: "1.1.0", disableGC: true }),
        [],
      )).plugins,
      "skipped",
    );
  });
});

Deno.test("STATUS errors (code 50) are surfaced as they are", async () => {
  await withFakes(async (f) => {
    await writeFakePlugin(
      f.bin,
      "notready",
      `[ "$CNI_COMMAND" = VERSION ] && { echo '${FAKE_VERSIONS}'; exit 0; }
echo '{"cniVersion":"1.1.0","code":50,"msg":"plugin not available","details":"no leases"}'; exit 1`,
    );
    await assert.rejects(
      () =>
        f.runtime().getStatus(
          f.list([{ type: "notready" }], { cniVersion: "1.1.0" }),
        ),
      (e: unknown) =>
        e instanceof CniPluginError && e.code === 50 &&
        e.command === "STATUS" && e.details === "no leases",
    );
  });
});

Deno.test("runtime arguments are validated before any plugin runs", async () => {
  await withFakes(async (f) => {
    await f.rec("rec1");
    const runtime = f.runtime();
    const list = f.list([{ type: "rec1" }]);
    const bad = [
      { ...rt, containerId: "../x" },
      { ...rt, ifName: "" },
      { ...rt, ifName: "a-very-long-ifname" },
      { ...rt, ifName: "a/b" },
      { ...rt, netns: "" },
      { ...rt, args: [["IP", "1;2"]] as [string, string][] },
    ];
    for (const r of bad) {
      await assert.rejects(
        () => runtime.addNetworkList(list, r),
        CniInvalidArgumentError,
        JSON.stringify(r),
      );
    }
    assert.deepEqual(await f.calls(), []);
    assert.equal(
      formatCniArgs([["IgnoreUnknown", "1"], ["IP", "10.0.0.2"]]),
      "IgnoreUnknown=1;IP=10.0.0.2",
    );
    assert.throws(() => formatCniArgs([["A=B", "1"]]), /bad key "A=B"/);
  });
});

Deno.test("a persistent version cache spares VERSION across runtimes until the binary changes", async () => {
  await withFakes(async (f) => {
    await f.rec("recplug");
    const list = f.list([{ type: "recplug" }]);
    const stored = new Map<
      string,
      { cniVersion: string; supportedVersions: string[] }
    >();
    const versionCache = {
      get: (k: string) => stored.get(k) ?? null,
      put: (
        k: string,
        v: { cniVersion: string; supportedVersions: string[] },
      ) => {
        stored.set(k, v);
      },
    };
    // Each runtime stands for one short-lived CLI process.
    const fresh = () =>
      new CniRuntime({
        binDirs: [f.bin],
        versionCache,
        env: { FAKE_LOG: f.log },
      });
    await fresh().addNetworkList(list, rt);
    await fresh().delNetworkList(list, rt, null);
    assert.equal(
      (await f.calls("VERSION")).length,
      1,
      "asked once, then cached",
    );
    assert.equal(stored.size, 1);
    // A replaced plugin (new mtime/size) is asked again.
    await Deno.writeTextFile(join(f.bin, "recplug"), "\n# upgraded", {
      append: true,
    });
    await fresh().addNetworkList(list, rt);
    assert.equal((await f.calls("VERSION")).length, 2);
  });
});
