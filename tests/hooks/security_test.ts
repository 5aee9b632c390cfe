import assert from "node:assert/strict";
import { join } from "node:path";
import { rootTest } from "../support/harness.ts";
import {
  defineHook,
  type HookInput,
  HookRunner,
  HookSecurityError,
} from "../../src/hooks/mod.ts";
import { readLines, withHooksDir, writeScript } from "./hook_fixtures.ts";

const CTX: HookInput = { operation: "add", vmId: "vm1", index: 0 };
const NOBODY = 65534;

/**
 * Sets up a hooks dir with a harmless hook `10-ok` and a TS hook that both
 * log when run, lets `spoil` make something unsafe, and checks that list()
 * and run() refuse with a HookSecurityError naming `culprit` and saying
 * `problem`, and that no hook ran.
 */
async function expectRefused(
  spoil: (dir: string) => Promise<string>,
  problem: RegExp,
) {
  await withHooksDir(async (dir, scratch) => {
    const log = join(scratch, "log");
    await writeScript(dir, "10-ok", `echo ran >> ${log}`);
    const culprit = await spoil(dir);
    const runner = new HookRunner({
      hooksDir: dir,
      tsHooks: {
        "00-ts.ts": defineHook({
          run: () => Deno.writeTextFile(log, "ts ran\n", { append: true }),
        }),
      },
    });
    const check = (e: unknown) => {
      assert.ok(e instanceof HookSecurityError, String(e));
      assert.equal(e.path, culprit);
      assert.ok(e.message.startsWith(culprit), e.message);
      assert.match(e.message, problem);
      return true;
    };
    await assert.rejects(runner.list(), check);
    await assert.rejects(runner.run("beforeAdd", CTX), check);
    assert.deepEqual(await readLines(log), [], "a hook ran");
  });
}

rootTest("a world-writable hooks dir is refused and no hook runs", async () => {
  await expectRefused(
    async (dir) => {
      await Deno.chmod(dir, 0o777);
      return dir;
    },
    /is world-writable \(mode 0777\); hooks must be owned by root and writable only by it/,
  );
});

rootTest("a group-writable hooks dir is refused", async () => {
  await expectRefused(async (dir) => {
    await Deno.chmod(dir, 0o775);
    return dir;
  }, /is group-writable \(mode 0775\)/);
});

rootTest("a hooks dir owned by another user is refused", async () => {
  await expectRefused(async (dir) => {
    await Deno.chown(dir, NOBODY, NOBODY);
    return dir;
  }, /is owned by uid 65534; hooks must be owned by root/);
});

rootTest(
  "a parent dir writable by others is refused (it could swap the hooks dir)",
  async () => {
    await expectRefused(async (dir) => {
      const parent = join(dir, "..");
      await Deno.chmod(parent, 0o777);
      return parent;
    }, /is world-writable \(mode 0777\)/);
  },
);

rootTest("a group-writable hook file is refused, naming it", async () => {
  await expectRefused(
    (dir) => writeScript(dir, "20-loose", "exit 0", 0o775),
    /20-loose is group-writable \(mode 0775\); hooks must be owned by root and writable only by it/,
  );
});

rootTest(
  "a world-writable hook file is refused even if it sorts last",
  async () => {
    await expectRefused(
      (dir) => writeScript(dir, "99-loose", "exit 0", 0o757),
      /is world-writable \(mode 0757\)/,
    );
  },
);

rootTest("a hook file owned by another user is refused", async () => {
  await expectRefused(async (dir) => {
    const path = await writeScript(dir, "20-theirs", "exit 0");
    await Deno.chown(path, NOBODY, NOBODY);
    return path;
  }, /20-theirs is owned by uid 65534/);
});

rootTest("a non-executable regular file is refused, not skipped", async () => {
  await expectRefused(
    (dir) => writeScript(dir, "20-notes", "exit 0", 0o644),
    /20-notes is not executable \(mode 0644\); make it executable/,
  );
});

rootTest("a symlink to a hook in a writable dir is refused", async () => {
  await withHooksDir(async (dir, scratch) => {
    const open = join(scratch, "open");
    await Deno.mkdir(open);
    await Deno.chmod(open, 0o777);
    const target = await writeScript(open, "hook", "exit 0");
    await Deno.symlink(target, join(dir, "10-link"));
    await assert.rejects(
      new HookRunner({ hooksDir: dir }).list(),
      (e: unknown) =>
        e instanceof HookSecurityError && e.path === open &&
        /world-writable/.test(e.message),
    );
  });
});

rootTest("a symlink to a safe executable runs the target", async () => {
  await withHooksDir(async (dir, scratch) => {
    const safe = join(scratch, "bin");
    await Deno.mkdir(safe);
    await Deno.chmod(safe, 0o755);
    const log = join(scratch, "log");
    const target = await writeScript(safe, "hook", `echo "$1" >> ${log}`);
    await Deno.symlink(target, join(dir, "10-link"));
    const runner = new HookRunner({ hooksDir: dir });
    assert.deepEqual(await runner.list(), [{
      name: "10-link",
      kind: "exec",
      path: target,
      events: ["beforeAdd", "afterAdd", "beforeRemove", "afterRemove"],
      timeoutMs: 10_000,
    }]);
    await runner.run("afterAdd", CTX);
    assert.deepEqual(await readLines(log), ["afterAdd"]);
  });
});

rootTest(
  "dotfiles, backups and subdirectories in the hooks dir are skipped",
  async () => {
    await withHooksDir(async (dir) => {
      // Unsafe on purpose: they must not even be looked at.
      await writeScript(dir, ".hidden", "exit 1", 0o666);
      await writeScript(dir, "10-hook~", "exit 1", 0o666);
      await Deno.mkdir(join(dir, "sub"));
      await writeScript(dir, "20-real", "exit 0");
      assert.deepEqual(
        (await new HookRunner({ hooksDir: dir }).list()).map((h) => h.name),
        ["20-real"],
      );
    });
  },
);

rootTest(
  "the check runs at every call: a hook made unsafe later is refused",
  async () => {
    await withHooksDir(async (dir) => {
      const path = await writeScript(dir, "10-hook", "exit 0");
      const runner = new HookRunner({ hooksDir: dir });
      await runner.run("beforeAdd", CTX);
      await Deno.chmod(path, 0o777);
      await assert.rejects(runner.run("beforeAdd", CTX), HookSecurityError);
    });
  },
);

rootTest(
  "a symlinked hooks dir whose link lives in a writable dir is refused",
  async () => {
    await withHooksDir(async (dir, scratch) => {
      const open = join(scratch, "open");
      await Deno.mkdir(open);
      await Deno.chmod(open, 0o777);
      const link = join(open, "hooks.d");
      await Deno.symlink(dir, link);
      await assert.rejects(
        new HookRunner({ hooksDir: link }).list(),
        (e: unknown) =>
          e instanceof HookSecurityError && e.path === open &&
          /world-writable/.test(e.message),
      );
      // The same dir through a link in a safe place is fine.
      await Deno.chmod(open, 0o755);
      await writeScript(dir, "10-ok", "exit 0");
      assert.deepEqual(
        (await new HookRunner({ hooksDir: link }).list()).map((h) => h.name),
        ["10-ok"],
      );
    });
  },
);
