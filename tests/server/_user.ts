/**
 * A user who is not root, made for a test and removed after it
 * (`useradd` with a unique name and a group of its own), and a way to run
 * a command as that user.
 *
 * @module
 */
import { join } from "node:path";
import { run, type RunResult, sh } from "../support/harness.ts";
import { REPO_ROOT } from "../support/cli.ts";

/** The test's user. */
export interface TestUser {
  name: string;
  uid: number;
  /** Its own group's gid (the group has its name). */
  gid: number;
  /** Runs `cmd` as the user (its uid, group and supplementary groups). */
  run(cmd: string[]): Promise<RunResult>;
}

/**
 * Makes a user (and its group), runs `fn`, and removes both, even when
 * `fn` throws. Its home (for Deno's cache) is a dir of its own under
 * `parent`, which must be traversable by others.
 */
export async function withUser(
  parent: string,
  fn: (user: TestUser) => Promise<void>,
): Promise<void> {
  const rand = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
  const name = `vmnict${rand}`.slice(0, 16);
  await sh(
    "useradd",
    "--user-group",
    "--no-create-home",
    "--shell",
    "/usr/sbin/nologin",
    name,
  );
  try {
    const uid = Number((await sh("id", "-u", name)).trim());
    const gid = Number((await sh("id", "-g", name)).trim());
    const home = join(parent, `home-${name}`);
    await Deno.mkdir(home);
    await Deno.chown(home, uid, gid);
    const env = {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: home,
      DENO_DIR: join(home, "deno"),
      NO_COLOR: "1",
    };
    await fn({
      name,
      uid,
      gid,
      run: (cmd) =>
        run("setpriv", [
          `--reuid=${name}`,
          `--regid=${name}`,
          "--init-groups",
          "--",
          ...cmd,
        ], { env, clearEnv: true, cwd: REPO_ROOT }),
    });
  } finally {
    await run("userdel", [name]);
    await run("groupdel", [name]);
  }
  const gone = await run("id", [name]);
  if (gone.code === 0) throw new Error(`user ${name} could not be removed`);
}
