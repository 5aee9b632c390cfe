import assert from "node:assert/strict";
import {
  createNetns,
  DEFAULT_NETNS_DIR,
  deleteNetns,
  ensureNetns,
  listNetns,
  netnsDirPropagates,
  netnsExists,
  netnsPath,
  releaseNetnsDir,
  withFreshNetns,
  withNetns,
} from "../../src/kernel/netns.ts";
import {
  LOCK_SH,
  LOCK_UN,
  O_CLOEXEC,
  O_DIRECTORY,
  O_RDONLY,
} from "../../src/kernel/constants.ts";
import { InvalidArgumentError, KernelError } from "../../src/sys/errors.ts";
import { check, cstr, libc } from "../../src/sys/libc.ts";
import {
  ipJson,
  netnsNames,
  removeNetnsWithPrefix,
  rootTest,
  run,
  sh,
  uniquePrefix,
  withScratchNetns,
} from "../support/harness.ts";

// The oracle reads the thread's netns link itself, through its own readlink:
// Deno's file APIs refuse /proc paths without --allow-all.
const testLibc = Deno.dlopen("libc.so.6", {
  readlink: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
});

/** The netns of the JS main thread, as `net:[inode]`. */
function currentNetns(): string {
  const buf = new Uint8Array(256);
  const path = new TextEncoder().encode("/proc/thread-self/ns/net\0");
  const n = Number(testLibc.symbols.readlink(path, buf, BigInt(buf.length)));
  assert.ok(n > 0, "readlink /proc/thread-self/ns/net");
  return new TextDecoder().decode(buf.subarray(0, n));
}

/** The `net:[inode]` of the netns mounted at `path`. */
function netnsIdOf(path: string): string {
  return `net:[${Deno.statSync(path).ino}]`;
}

function assertKernelError(code: string) {
  return (err: unknown) => {
    assert.ok(err instanceof KernelError, `expected KernelError, got ${err}`);
    assert.equal(err.code, code);
    return true;
  };
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

rootTest(
  "createNetns makes a netns iproute2 sees and deleteNetns removes it",
  async () => {
    const prefix = uniquePrefix("ns");
    const name = prefix + "a";
    const before = currentNetns();
    try {
      const path = createNetns(name);
      assert.equal(path, `${DEFAULT_NETNS_DIR}/${name}`);
      assert.equal(currentNetns(), before, "thread back in its own netns");
      assert.notEqual(netnsIdOf(path), before, "a fresh netns, not ours");

      assert.ok((await netnsNames()).includes(name));
      const links = await ipJson<{ ifname: string }>(
        "-n",
        name,
        "link",
        "show",
      );
      assert.deepEqual(links.map((l) => l.ifname), ["lo"]);
      assert.ok(netnsExists(name));
      assert.ok(listNetns().includes(name));

      // The dir is a shared mount, as iproute2 leaves it.
      const real = Deno.realPathSync(DEFAULT_NETNS_DIR);
      const mountinfo = await sh("cat", "/proc/self/mountinfo");
      const line = mountinfo.split("\n")
        .findLast((l) => l.split(" ")[4] === real);
      assert.match(line ?? "", / shared:\d+/);

      // Second create: EEXIST, the existing netns untouched.
      const id = netnsIdOf(path);
      assert.throws(() => createNetns(name), assertKernelError("EEXIST"));
      assert.equal(netnsIdOf(path), id);
      await ipJson("-n", name, "link", "show");

      assert.equal(deleteNetns(name), true);
      assert.ok(!(await netnsNames()).includes(name));
      assert.ok(!exists(path), "file removed");
      assert.ok(!netnsExists(name));
      assert.equal(deleteNetns(name), false, "idempotent");
    } finally {
      await removeNetnsWithPrefix(prefix);
    }
  },
);

rootTest(
  "netns names that are not plain file names are refused, nothing created",
  async () => {
    const prefix = uniquePrefix("ns");
    const before = await netnsNames();
    const bad = ["", "a/b", "..", ".", "../x", `${prefix}/x`, ".hidden", "a\0b"]
      .concat(["x".repeat(256)]);
    try {
      for (const name of bad) {
        const invalid = (err: unknown) => err instanceof InvalidArgumentError;
        assert.throws(() => createNetns(name), invalid, JSON.stringify(name));
        assert.throws(() => ensureNetns(name), invalid);
        assert.throws(() => deleteNetns(name), invalid);
        assert.throws(() => netnsExists(name), invalid);
        assert.throws(() => netnsPath(name), invalid);
      }
      assert.deepEqual(await netnsNames(), before);
    } finally {
      await removeNetnsWithPrefix(prefix);
    }
  },
);

rootTest(
  "withNetns runs inside the target netns and always switches back",
  async () => {
    const prefix = uniquePrefix("ns");
    const original = currentNetns();
    await withScratchNetns(prefix, ["a", "b"], ([a, b]) => {
      // An iproute2-made netns works the same as one of ours.
      const inside = withNetns(a, () => currentNetns());
      assert.equal(inside, netnsIdOf(a));
      assert.equal(currentNetns(), original);

      // Nested: back to the outer one, then to ours.
      withNetns(a, () => {
        withNetns(b, () => assert.equal(currentNetns(), netnsIdOf(b)));
        assert.equal(currentNetns(), netnsIdOf(a));
      });
      assert.equal(currentNetns(), original);

      // The callback throws: the error passes through, the thread is back.
      assert.throws(
        () =>
          withNetns(a, () => {
            throw new RangeError("boom");
          }),
        RangeError,
      );
      assert.equal(currentNetns(), original);

      // Async callbacks are refused (after switching back); their rejection
      // must not surface as an unhandled one.
      assert.throws(
        () =>
          withNetns(a, async () => {
            await Promise.resolve();
            throw new Error("late");
          }),
        /only synchronous work/,
      );
      assert.equal(currentNetns(), original);
      // The same in a fresh unnamed netns.
      assert.throws(
        () => withFreshNetns(async () => await Promise.resolve()),
        /withFreshNetns: .*only synchronous work/,
      );
      assert.equal(currentNetns(), original);
      assert.notEqual(withFreshNetns(() => currentNetns()), original);

      assert.equal(withNetns(b, () => 42), 42);
    });
    assert.equal(currentNetns(), original);
  },
);

rootTest(
  "withNetns on a missing or non-netns path fails and changes nothing",
  async () => {
    const prefix = uniquePrefix("ns");
    const original = currentNetns();
    const missing = `${DEFAULT_NETNS_DIR}/${prefix}missing`;
    let called = false;
    assert.throws(
      () => withNetns(missing, () => (called = true)),
      (err: unknown) => {
        assertKernelError("ENOENT")(err);
        assert.equal((err as KernelError).object, missing);
        return true;
      },
    );
    const file = await Deno.makeTempFile({ prefix: "vmnict-notns" });
    try {
      assert.throws(
        () => withNetns(file, () => (called = true)),
        assertKernelError("EINVAL"),
      );
    } finally {
      await Deno.remove(file);
    }
    assert.equal(called, false);
    assert.equal(currentNetns(), original);
  },
);

rootTest(
  "a leftover empty netns file is not a netns; delete and ensure clear it",
  async () => {
    const prefix = uniquePrefix("ns");
    const name = prefix + "left";
    const path = netnsPath(name);
    try {
      Deno.mkdirSync(DEFAULT_NETNS_DIR, { recursive: true });
      Deno.writeFileSync(path, new Uint8Array(), { mode: 0 });
      assert.ok(!netnsExists(name));
      assert.ok(!listNetns().includes(name));
      assert.equal(deleteNetns(name), true, "leftover removed");
      assert.ok(!exists(path));

      // ensureNetns replaces a leftover, then is idempotent.
      Deno.writeFileSync(path, new Uint8Array(), { mode: 0 });
      assert.deepEqual(ensureNetns(name), { path, created: true });
      assert.ok(netnsExists(name));
      const id = netnsIdOf(path);
      assert.deepEqual(ensureNetns(name), { path, created: false });
      assert.equal(netnsIdOf(path), id, "the same netns kept");
      await ipJson("-n", name, "link", "show");
      assert.ok(deleteNetns(name));
      assert.ok(!(await netnsNames()).includes(name));
    } finally {
      await removeNetnsWithPrefix(prefix);
    }
  },
);

rootTest(
  "netnsDirPropagates: ok here, not ok in a slave mount namespace",
  async () => {
    const prefix = uniquePrefix("ns");
    try {
      // Make sure the dir is a shared mount, as it is once any netns exists.
      createNetns(prefix + "p");
      assert.deepEqual(netnsDirPropagates(), { ok: true });

      // What `ip netns exec` does: a new mount namespace, everything a slave.
      const probe = new URL("./propagation_probe.ts", import.meta.url).pathname;
      const r = await run("unshare", [
        "--mount",
        "--propagation",
        "slave",
        "--",
        Deno.execPath(),
        "run",
        "--quiet",
        "--allow-read",
        "--allow-ffi",
        probe,
      ]);
      assert.equal(r.code, 0, r.stderr);
      const verdict = JSON.parse(r.stdout);
      assert.equal(verdict.ok, false);
      assert.match(verdict.reason, new RegExp(DEFAULT_NETNS_DIR));
      assert.match(verdict.reason, /ip netns exec/);
    } finally {
      await removeNetnsWithPrefix(prefix);
    }
  },
);

/** The mountinfo lines whose mount point is `path` (a real path), in order. */
async function mountsAt(path: string): Promise<string[]> {
  const mountinfo = await sh("cat", "/proc/self/mountinfo");
  return mountinfo.split("\n").filter((l) => l.split(" ")[4] === path);
}

/** Detaches every mount at `path`, for a test's cleanup (best effort). */
async function unmountAll(path: string): Promise<void> {
  for (let i = 0; i < 10 && (await mountsAt(path)).length; i++) {
    await run("umount", ["-l", path]);
  }
}

rootTest(
  "releaseNetnsDir: a custom netns dir's self-bind goes with its last netns",
  async () => {
    const tmp = await Deno.makeTempDir({ prefix: "vmnict-nsdir-" });
    const dir = `${tmp}/netns`;
    const prefix = uniquePrefix("nd");
    try {
      releaseNetnsDir(dir); // a dir that does not exist yet: nothing to do
      const a = createNetns(prefix + "a", dir);
      const b = createNetns(prefix + "b", dir);
      assert.equal(a, `${dir}/${prefix}a`);
      assert.ok(netnsExists(prefix + "b", dir));
      const real = Deno.realPathSync(dir);

      // Making a netns there bind-mounted the dir onto itself, shared.
      const [mount, ...stacked] = await mountsAt(real);
      assert.ok(mount, `no mount at ${real}`);
      assert.deepEqual(stacked, [], "mounted once for two netns");
      assert.match(mount, / shared:\d+/);
      assert.equal(
        mount.split(" ")[3],
        real,
        "a self-bind: its root is the dir",
      );

      // Not empty yet: the mount stays.
      assert.ok(deleteNetns(prefix + "a", dir));
      releaseNetnsDir(dir);
      assert.equal((await mountsAt(real)).length, 1, "one netns left in it");
      assert.ok(netnsExists(prefix + "b", dir), "the netns left untouched");

      // Another process creating a netns there (its shared lock): kept.
      assert.ok(deleteNetns(prefix + "b", dir));
      assert.deepEqual([...Deno.readDirSync(dir)], [], `${b} removed`);
      const fd = check(
        libc().open(cstr(real), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0),
        "open",
        real,
      );
      try {
        check(libc().flock(fd, LOCK_SH), "flock", real);
        releaseNetnsDir(dir);
        assert.equal((await mountsAt(real)).length, 1, "kept while locked");
        check(libc().flock(fd, LOCK_UN), "flock", real);
      } finally {
        libc().close(fd);
      }

      // Empty and free: the self-bind is undone, the dir itself stays.
      releaseNetnsDir(`${dir}/`);
      assert.deepEqual(await mountsAt(real), [], "mount left at the dir");
      assert.ok(Deno.statSync(dir).isDirectory);
      releaseNetnsDir(dir); // idempotent
      assert.deepEqual(await mountsAt(real), []);
    } finally {
      await removeNetnsWithPrefix(prefix);
      for (const n of listNetns(dir, { stale: true })) deleteNetns(n, dir);
      await unmountAll(Deno.realPathSync(tmp) + "/netns");
      await Deno.remove(tmp, { recursive: true });
    }
  },
);

rootTest(
  "releaseNetnsDir: a mount that is not the dir's self-bind stays",
  async () => {
    const tmp = await Deno.makeTempDir({ prefix: "vmnict-nsdir-" });
    const dir = `${tmp}/netns`;
    const prefix = uniquePrefix("nd");
    try {
      // Something else mounted at a custom dir (a tmpfs) is not vmnic's.
      await Deno.mkdir(dir);
      await sh("mount", "-t", "tmpfs", "-o", "size=64k", "vmnict", dir);
      const real = Deno.realPathSync(dir);
      createNetns(prefix + "t", dir);
      assert.ok(deleteNetns(prefix + "t", dir));
      releaseNetnsDir(dir);
      const [tmpfs, ...more] = await mountsAt(real);
      assert.match(tmpfs ?? "", / - tmpfs vmnict /, "the tmpfs stays");
      assert.deepEqual(more, []);
    } finally {
      for (const n of listNetns(dir, { stale: true })) deleteNetns(n, dir);
      await unmountAll(Deno.realPathSync(tmp) + "/netns");
      await Deno.remove(tmp, { recursive: true });
    }
  },
);

rootTest(
  "releaseNetnsDir never unmounts the default netns dir, however it is spelled",
  async () => {
    // The default dir is shared with iproute2 (and other installs), so it is
    // seldom empty here: look at it in a mount namespace of its own, where a
    // fresh tmpfs on /run leaves it empty once the probe's netns is gone.
    const real = Deno.realPathSync("/var/run");
    assert.equal(real, "/run", "the probe hides /run");
    const probe = new URL("./release_probe.ts", import.meta.url).pathname;
    const spellings = [
      DEFAULT_NETNS_DIR,
      `${DEFAULT_NETNS_DIR}/`,
      "/run/netns",
      "/var/run/../run/netns",
    ];
    const r = await run("unshare", [
      "--mount",
      "--propagation",
      "private",
      "--",
      "sh",
      "-c",
      'mount -t tmpfs vmnict /run && exec "$@"',
      "sh",
      Deno.execPath(),
      "run",
      "--quiet",
      "--allow-read",
      "--allow-write",
      "--allow-ffi",
      "--allow-run=cat",
      probe,
      uniquePrefix("nd") + "p",
      ...spellings,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as {
      real: string;
      entries: number;
      before: string[];
      after: Record<string, string[]>;
    };
    assert.equal(report.real, "/run/netns");
    assert.equal(report.entries, 0, "the default dir is empty in the probe");
    // Control: it is a self-bind onto the tmpfs, which a custom dir would lose.
    assert.ok(
      report.before.some((l) =>
        l.split(" ")[3] === "/netns" && / shared:\d+ - tmpfs vmnict /.test(l)
      ),
      report.before.join("\n"),
    );
    for (const dir of spellings) {
      assert.deepEqual(report.after[dir], report.before, dir);
    }
  },
);
