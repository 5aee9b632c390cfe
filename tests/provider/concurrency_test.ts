/**
 * Concurrent vmnic processes on one host: 4 workers at once, each adding 5
 * VMs one after the other through the CLI, share one record store, one
 * bridge and one host-local range without losing or doubling anything; then
 * 4 concurrent deletes leave nothing behind.
 */
import assert from "node:assert/strict";
import { rootTest } from "../support/harness.ts";
import { type Fixture, makeFixture, vethsOnBridge } from "./_fixture.ts";
import type { NicConfig } from "../../src/provider/types.ts";

const WORKERS = 4;
const VMS_PER_WORKER = 5;
const TOTAL = WORKERS * VMS_PER_WORKER;
/** Generous: the whole run takes a few seconds on an idle machine. */
const TIME_LIMIT_MS = 180_000;

/** Rejects when `work` has not finished within `ms`. */
async function within<T>(ms: number, what: string, work: Promise<T>) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} did not finish within ${ms} ms`)),
      ms,
    );
  });
  try {
    return await Promise.race([work, limit]);
  } finally {
    clearTimeout(timer);
  }
}

function vmId(worker: number, n: number): string {
  return `vm-${worker}-${n}`;
}

/** One worker: adds its VMs one after the other, each a CLI process. */
async function addWorker(fx: Fixture, worker: number): Promise<NicConfig[]> {
  const out: NicConfig[] = [];
  for (let n = 0; n < VMS_PER_WORKER; n++) {
    out.push(...await fx.cliOk<NicConfig[]>(["add", vmId(worker, n)]));
  }
  return out;
}

rootTest(
  "concurrency: 4 processes adding 20 VMs at once, then deleting them",
  async () => {
    const fx = await makeFixture("cc", { octet: 214 });
    try {
      const ids = Array.from(
        { length: WORKERS },
        (_, w) => Array.from({ length: VMS_PER_WORKER }, (_, n) => vmId(w, n)),
      );
      const added = (await within(
        TIME_LIMIT_MS,
        "concurrent adds",
        Promise.all(ids.map((_, w) => addWorker(fx, w))),
      )).flat();

      assert.equal(added.length, TOTAL);
      const all = ids.flat().sort();
      const p = await fx.provider();
      try {
        const records = await p.list();
        assert.equal(records.length, TOTAL, "one record per VM");
        assert.deepEqual(records.map((n) => n.vmId).sort(), all);
        const ips = records.map((n) => n.ips[0].address);
        assert.equal(new Set(ips).size, TOTAL, `distinct IPs: ${ips}`);
        assert.deepEqual(await fx.leasedIps(), [...ips].sort());
        assert.equal(new Set(records.map((n) => n.mac)).size, TOTAL);
        assert.deepEqual(await fx.netns(), all, "one netns per VM");
        assert.equal((await vethsOnBridge(fx.bridge)).length, TOTAL);
        for (const id of all) {
          const v = await p.verify(id);
          assert.ok(v.ok, `${id}: ${v.problems.join("; ")}`);
        }
      } finally {
        p.close();
      }

      // Delete them the same way: 4 processes at once, 5 VMs each.
      const deleted = await within(
        TIME_LIMIT_MS,
        "concurrent deletes",
        Promise.all(
          ids.map((group) =>
            fx.cliOk<{ deleted: string[]; errors: unknown[] }>([
              "delete",
              ...group,
            ])
          ),
        ),
      );
      for (const [w, r] of deleted.entries()) {
        assert.deepEqual(r, { deleted: ids[w], errors: [], warnings: [] });
      }
      assert.deepEqual(await fx.netns(), []);
      assert.deepEqual(await fx.cliOk(["list"]), []);
      assert.deepEqual(await fx.leasedIps(), []);
      assert.deepEqual(await vethsOnBridge(fx.bridge), []);
    } finally {
      await fx.cleanup();
    }
  },
);
