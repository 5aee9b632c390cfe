/**
 * Run by netns_test.ts in a private mount namespace whose /run is a fresh
 * tmpfs, so the default netns dir starts empty there: makes and deletes a
 * netns in it, then calls releaseNetnsDir on each spelling of the default
 * dir given as arguments. Prints, as JSON, the mountinfo lines at the dir's
 * real path before and after each call.
 */
import {
  createNetns,
  DEFAULT_NETNS_DIR,
  deleteNetns,
  releaseNetnsDir,
} from "../../src/kernel/netns.ts";

const [name, ...spellings] = Deno.args;

/** The mountinfo lines whose mount point is `path`. */
async function mountsAt(path: string): Promise<string[]> {
  // Deno's file APIs refuse /proc paths: cat reads it.
  const out = await new Deno.Command("cat", { args: ["/proc/self/mountinfo"] })
    .output();
  return new TextDecoder().decode(out.stdout).split("\n")
    .filter((l) => l.split(" ")[4] === path);
}

createNetns(name);
deleteNetns(name);
const real = Deno.realPathSync(DEFAULT_NETNS_DIR);
const report: Record<string, unknown> = {
  real,
  entries: [...Deno.readDirSync(real)].length,
  before: await mountsAt(real),
  after: {} as Record<string, string[]>,
};
for (const dir of spellings) {
  releaseNetnsDir(dir);
  (report.after as Record<string, string[]>)[dir] = await mountsAt(real);
}
console.log(JSON.stringify(report));
