/**
 * `recover` after a crashed removal: NICs left `deleting` are finished, not
 * revived; when that was every NIC (a crashed `delete`), the VM is gone
 * afterwards, netns included, and recover says it knows no such VM.
 */
import assert from "node:assert/strict";
import { rootTest } from "../support/harness.ts";
import { makeFixture } from "./_fixture.ts";
import { Store } from "../../src/store/store.ts";
import { NotFoundError } from "../../src/provider/errors.ts";

rootTest(
  "recover finishes NICs a crashed remove left deleting, keeps the rest",
  async () => {
    const fx = await makeFixture("rst", { octet: 239 });
    const p = await fx.provider();
    try {
      const [nic0, nic1] = await p.add("vm1", {}, {}, {});
      // What a remove killed after marking NIC 1 leaves behind.
      const store = Store.open(fx.rootDir);
      store.setNicState("vm1", "deleting", { indices: [1] });
      store.close();

      const r = await p.recover("vm1");
      assert.deepEqual(r.problems, []);
      assert.deepEqual(r.nics.map((n) => [n.index, n.mac]), [[0, nic0.mac]]);
      // NIC 0 was healthy: not rebuilt, not touched, the same record.
      assert.deepEqual(r.rebuilt, []);
      assert.deepEqual(r.repaired, []);
      assert.deepEqual(r.nics, [nic0]);
      assert.deepEqual((await p.list()).map((n) => n.index), [0]);
      assert.deepEqual(await fx.leasedIps(), [nic0.ips[0].address]);
      assert.ok(!(await fx.leasedIps()).includes(nic1.ips[0].address));
      assert.equal((await p.verify("vm1")).ok, true);
    } finally {
      p.close();
      await fx.cleanup();
    }
  },
);

rootTest(
  "recover after a crashed delete finishes it: no netns, exit not found",
  async () => {
    const fx = await makeFixture("rsd", { octet: 239 });
    const p = await fx.provider();
    try {
      await p.add("vm1", {});
      const store = Store.open(fx.rootDir);
      store.markVmDeleting("vm1");
      store.close();

      await assert.rejects(
        p.recover("vm1"),
        (e: unknown) =>
          e instanceof NotFoundError && /delete is finished/.test(e.message),
      );
      assert.deepEqual(await p.vms(), []);
      assert.deepEqual(await p.list(), []);
      assert.deepEqual(await fx.netns(), []);
      assert.deepEqual(await fx.leasedIps(), []);
    } finally {
      p.close();
      await fx.cleanup();
    }
  },
);
