import assert from "node:assert/strict";
import { join } from "node:path";
import {
  acquireVmLock,
  LockError,
  lockHolder,
  LockTimeoutError,
} from "../../src/store/mod.ts";

const HOLDER = new URL("./lock_holder.ts", import.meta.url).pathname;

/** A lock_holder.ts process with only the permissions it needs. */
function spawnHolder(
  runDir: string,
  vmId: string,
  holdMs: number,
  mode = "wait",
) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-config",
      "--allow-read",
      `--allow-write=${runDir}`,
      "--allow-ffi",
      "--allow-sys=uid",
      HOLDER,
      runDir,
      vmId,
      String(holdMs),
      mode,
    ],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  // Kept whole, so a holder that ends early says why in the failure.
  const stderr = new Response(child.stderr).text();
  const lines = child.stdout.pipeThrough(new TextDecoderStream())
    .getReader();
  let buffered = "";
  /** The next output line, e.g. `acquired 1732800000000`. */
  async function next(): Promise<string> {
    for (;;) {
      const nl = buffered.indexOf("\n");
      if (nl >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        return line;
      }
      const { value, done } = await lines.read();
      if (done) {
        const status = await child.status;
        throw new Error(
          `holder ${child.pid} ended (code ${status.code}, signal ${status.signal}) before a line; stdout ${
            JSON.stringify(buffered)
          }, stderr ${JSON.stringify(await stderr)}`,
        );
      }
      buffered += value;
    }
  }
  return { child, next };
}

function timeOf(line: string, word: string): number {
  const [w, t] = line.split(" ");
  assert.equal(w, word, `expected "${word} <ms>", got ${line}`);
  return Number(t);
}

async function withRunDir(fn: (runDir: string) => Promise<void>) {
  const base = await Deno.makeTempDir({ prefix: "vmnict-locks-" });
  try {
    await fn(join(base, "run"));
  } finally {
    await Deno.remove(base, { recursive: true });
  }
}

Deno.test("two processes contending for one VM's lock run one after the other", async () => {
  await withRunDir(async (runDir) => {
    const a = spawnHolder(runDir, "vm1", 400);
    const aAcquired = timeOf(await a.next(), "acquired");
    const b = spawnHolder(runDir, "vm1", 0);
    const bAcquired = timeOf(await b.next(), "acquired");
    const aReleased = timeOf(await a.next(), "released");
    assert.ok(aAcquired <= aReleased);
    assert.ok(
      bAcquired >= aReleased,
      `B got the lock at ${bAcquired}, before A released it at ${aReleased}`,
    );
    assert.equal((await a.child.status).code, 0);
    assert.equal((await b.child.status).code, 0);
  });
});

Deno.test("different VMs' locks are taken in parallel by two processes", async () => {
  await withRunDir(async (runDir) => {
    const a = spawnHolder(runDir, "vm1", 3000);
    timeOf(await a.next(), "acquired");
    const b = spawnHolder(runDir, "vm2", 0);
    const bAcquired = timeOf(await b.next(), "acquired");
    const aReleased = timeOf(await a.next(), "released");
    assert.ok(bAcquired < aReleased, "vm2 waited for vm1's lock");
    await a.child.status;
    await b.child.status;
  });
});

Deno.test("wait=false returns null while another process holds the lock, and the lock once it is free", async () => {
  await withRunDir(async (runDir) => {
    const a = spawnHolder(runDir, "vm1", 600);
    timeOf(await a.next(), "acquired");
    assert.equal(await acquireVmLock(runDir, "vm1", { waitMs: 0 }), null);
    const other = spawnHolder(runDir, "vm1", 0, "nowait");
    assert.equal(await other.next(), "busy");
    await other.child.status;
    timeOf(await a.next(), "released");
    await a.child.status;
    const lock = await acquireVmLock(runDir, "vm1", { waitMs: 0 });
    assert.ok(lock);
    lock.release();
    lock.release(); // idempotent
  });
});

Deno.test("a killed holder's lock is free at once", async () => {
  await withRunDir(async (runDir) => {
    const a = spawnHolder(runDir, "vm1", 60_000);
    timeOf(await a.next(), "acquired");
    assert.equal(await acquireVmLock(runDir, "vm1", { waitMs: 0 }), null);
    a.child.kill("SIGKILL");
    await a.child.status;
    await a.child.stdout.cancel().catch(() => {});
    const lock = await acquireVmLock(runDir, "vm1", { waitMs: 2000 });
    assert.ok(lock);
    lock.release();
  });
});

Deno.test("a bounded wait ends with LockTimeoutError when the lock stays held", async () => {
  await withRunDir(async (runDir) => {
    const held = await acquireVmLock(runDir, "vm1", {
      waitMs: 1000,
      op: "add",
    });
    assert.ok(held);
    try {
      const t0 = Date.now();
      await assert.rejects(
        acquireVmLock(runDir, "vm1", { waitMs: 150 }),
        (e: unknown) =>
          e instanceof LockTimeoutError && e.object === "vm1" &&
          e.timeoutMs === 150 &&
          // Whoever gives up waiting is told who holds the VM.
          e.message.includes(`held by pid ${Deno.pid} (add) since`),
      );
      const waited = Date.now() - t0;
      assert.ok(waited >= 140 && waited < 2000, `waited ${waited} ms`);
    } finally {
      held.release();
    }
  });
});

Deno.test("within one process, a second acquisition waits for the first release", async () => {
  await withRunDir(async (runDir) => {
    const first = await acquireVmLock(runDir, "vm1", { waitMs: 1000 });
    assert.ok(first);
    let second = false;
    const pending = acquireVmLock(runDir, "vm1", { waitMs: 5000 })
      .then((l) => {
        second = true;
        return l;
      });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(second, false);
    first.release();
    const lock = await pending;
    assert.ok(lock);
    lock.release();
  });
});

Deno.test("releaseAndRemove deletes the file and a waiter ends up holding a fresh one", async () => {
  await withRunDir(async (runDir) => {
    const first = await acquireVmLock(runDir, "vm1", { waitMs: 1000 });
    assert.ok(first);
    assert.equal(first.path, join(runDir, "locks", "vm1.lock"));
    assert.equal((await Deno.stat(first.path)).mode! & 0o777, 0o600);
    assert.equal((await Deno.stat(runDir)).mode! & 0o777, 0o700);
    const pending = acquireVmLock(runDir, "vm1", { waitMs: 5000 });
    await new Promise((r) => setTimeout(r, 50));
    first.releaseAndRemove();
    first.releaseAndRemove(); // idempotent
    const second = await pending;
    assert.ok(second);
    try {
      // The waiter's lock is on the file now at the path: it excludes others.
      await Deno.stat(second.path);
      assert.equal(await acquireVmLock(runDir, "vm1", { waitMs: 0 }), null);
    } finally {
      second.release();
    }
  });
});

Deno.test("bad VM ids are refused as lock names", async () => {
  await withRunDir(async (runDir) => {
    for (const bad of ["", ".", "..", "a/b", "x\0y", "v".repeat(251)]) {
      await assert.rejects(
        acquireVmLock(runDir, bad, { waitMs: 0 }),
        LockError,
        JSON.stringify(bad),
      );
    }
  });
});

Deno.test("a symlink planted where a lock file goes is refused, not followed", async () => {
  await withRunDir(async (runDir) => {
    const target = join(runDir, "..", "victim");
    await Deno.writeTextFile(target, "keep me");
    await Deno.mkdir(join(runDir, "locks"), { recursive: true, mode: 0o700 });
    await Deno.symlink(target, join(runDir, "locks", "vm1.lock"));
    await assert.rejects(
      acquireVmLock(runDir, "vm1", { waitMs: 0 }),
      (e: unknown) => e instanceof LockError && /symlink/.test(e.message),
    );
    assert.equal(await Deno.readTextFile(target), "keep me");
  });
});

Deno.test("a run dir others can write to is refused", async () => {
  await withRunDir(async (runDir) => {
    await Deno.mkdir(runDir, { recursive: true });
    await Deno.chmod(runDir, 0o777);
    await assert.rejects(
      acquireVmLock(runDir, "vm1", { waitMs: 0 }),
      (e: unknown) =>
        e instanceof LockError && e.message.includes(runDir) &&
        /world-writable/.test(e.message),
    );
  });
});

Deno.test("the holder's pid and operation are in the lock file while it is held", async () => {
  await withRunDir(async (runDir) => {
    const lock = await acquireVmLock(runDir, "vm1", { waitMs: 0, op: "gc" });
    assert.ok(lock);
    try {
      const h = lockHolder(runDir, "vm1");
      assert.equal(h?.pid, Deno.pid);
      assert.equal(h?.op, "gc");
      assert.ok(Date.now() - Date.parse(h!.since) < 10_000);
    } finally {
      lock.release();
    }
  });
});
