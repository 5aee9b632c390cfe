import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import {
  DB_FILE_NAME,
  DuplicateNicError,
  newNicId,
  type NicRecord,
  SCHEMA_VERSION,
  Store,
  StoreError,
} from "../../src/store/mod.ts";

function nic(vmId: string, index: number, extra: Partial<NicRecord> = {}) {
  const rec: NicRecord = {
    id: newNicId(),
    vmId,
    index,
    ifName: `eth${index}`,
    tap: `tap${index}`,
    mac: `0a:58:0a:58:00:${index.toString(16).padStart(2, "0")}`,
    network: "vmnic",
    netnsPath: `/var/run/netns/vmnic-${vmId}`,
    numQueues: 2,
    queueSize: 512,
    mtu: 1500,
    ips: [
      { address: "10.88.0.5", prefix: 16, gateway: "10.88.0.1", version: 4 },
      { address: "fd00::5", prefix: 64, version: 6 },
    ],
    dns: { nameservers: ["10.88.0.1"] },
    cniResult: { cniVersion: "1.0.0", interfaces: [{ name: "eth0" }] },
    cniConfig: '{"cniVersion":"1.0.0","name":"vmnic","plugins":[]}',
    containerId: `vmnic-${vmId}-${index}`,
    state: "active",
    createdAt: new Date().toISOString(),
    ...extra,
  };
  return rec;
}

async function withStore(
  fn: (store: Store, dir: string) => void | Promise<void>,
) {
  const base = await Deno.makeTempDir({ prefix: "vmnict-store-" });
  const dir = join(base, "root");
  const store = Store.open(dir);
  try {
    await fn(store, dir);
  } finally {
    store.close();
    await Deno.remove(base, { recursive: true });
  }
}

Deno.test("open on an empty dir creates it 0700 and the db 0600 at the current schema", async () => {
  await withStore((store, dir) => {
    assert.equal(store.path, join(dir, DB_FILE_NAME));
    assert.equal(Deno.statSync(dir).mode! & 0o777, 0o700);
    for (const suffix of ["", "-wal", "-shm"]) {
      const st = Deno.statSync(store.path + suffix);
      assert.equal(st.mode! & 0o777, 0o600, `mode of vmnic.db${suffix}`);
    }
    const db = new DatabaseSync(store.path, { readOnly: true });
    try {
      assert.equal(
        db.prepare("PRAGMA user_version").get()?.user_version,
        SCHEMA_VERSION,
      );
      assert.equal(
        db.prepare("PRAGMA journal_mode").get()?.journal_mode,
        "wal",
      );
    } finally {
      db.close();
    }
  });
});

Deno.test("an existing db file with a wide mode is narrowed to 0600", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vmnict-store-" });
  try {
    const path = join(dir, DB_FILE_NAME);
    await Deno.writeFile(path, new Uint8Array(), { mode: 0o644 });
    await Deno.chmod(path, 0o644);
    Store.open(dir).close();
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("insert, get by id and by index, list in order, delete", async () => {
  await withStore((store) => {
    const b1 = nic("vm-b", 1);
    const a0 = nic("vm-a", 0);
    const b0 = nic("vm-b", 0, { cniResult: undefined });
    store.insertNic(b1);
    store.insertNic(a0);
    store.insertNic(b0);

    assert.deepEqual(store.getNic(a0.id), a0);
    assert.deepEqual(store.getNicByIndex("vm-b", 1), b1);
    assert.equal(store.getNicByIndex("vm-b", 0)?.cniResult, null);
    assert.equal(store.getNic("nope"), null);
    assert.equal(store.getNicByIndex("vm-a", 7), null);

    assert.deepEqual(
      store.listNics().map((r) => [r.vmId, r.index]),
      [["vm-a", 0], ["vm-b", 0], ["vm-b", 1]],
    );
    assert.deepEqual(store.listNics({ vmId: "vm-b" }).map((r) => r.id), [
      b0.id,
      b1.id,
    ]);
    assert.deepEqual(store.listNics({ vmId: "vm-z" }), []);
    assert.deepEqual(store.listVmIds(), ["vm-a", "vm-b"]);
    assert.deepEqual(store.usedIndices("vm-b"), [0, 1]);

    store.deleteNic("vm-b", 0);
    store.deleteNic("vm-b", 0); // absent is fine
    assert.deepEqual(store.usedIndices("vm-b"), [1]);
    assert.equal(store.deleteVm("vm-b"), 1);
    assert.equal(store.deleteVm("vm-b"), 0);
    assert.deepEqual(store.listVmIds(), ["vm-a"]);
  });
});

Deno.test("the exact conflist text is kept byte for byte", async () => {
  await withStore((store) => {
    const text =
      '{\n  "cniVersion": "1.0.0",  "name": "x", "plugins": [ ]\n}\n';
    const r = nic("vm1", 0, { cniConfig: text });
    store.insertNic(r);
    assert.equal(store.getNic(r.id)?.cniConfig, text);
  });
});

Deno.test("a duplicate (vmId, index) throws DuplicateNicError and changes nothing", async () => {
  await withStore((store) => {
    const first = nic("vm1", 0);
    store.insertNic(first);
    const dup = nic("vm1", 0, { tap: "tapX", mac: "0a:58:00:00:00:99" });
    const err = assert.throws(
      () => store.insertNic(dup),
      (e: unknown) => {
        assert.ok(e instanceof DuplicateNicError);
        assert.equal(e.vmId, "vm1");
        assert.equal(e.index, 0);
        assert.match(e.message, /vm1.*index 0/);
        return true;
      },
    );
    void err;
    assert.deepEqual(store.listNics(), [first]);
    assert.equal(store.getNic(dup.id), null);
  });
});

Deno.test("a duplicate id is a StoreError, not a DuplicateNicError", async () => {
  await withStore((store) => {
    const first = nic("vm1", 0);
    store.insertNic(first);
    assert.throws(
      () => store.insertNic(nic("vm2", 0, { id: first.id })),
      (e: unknown) =>
        e instanceof StoreError && !(e instanceof DuplicateNicError) &&
        e.op === "insert nic" && e.object === "vm2/0",
    );
    assert.deepEqual(store.listVmIds(), ["vm1"]);
  });
});

Deno.test("invalid values are refused by the schema with a StoreError", async () => {
  await withStore((store) => {
    assert.throws(
      () => store.insertNic(nic("vm1", -1)),
      (e: unknown) => e instanceof StoreError && /CHECK/.test(e.message),
    );
    assert.throws(
      () => store.insertNic(nic("vm1", 0, { state: "bogus" as "active" })),
      StoreError,
    );
    assert.deepEqual(store.listNics(), []);
  });
});

Deno.test("markDeleting marks all NICs of a VM or the given indices only", async () => {
  await withStore((store) => {
    for (const i of [0, 1, 2]) store.insertNic(nic("vm1", i));
    store.insertNic(nic("vm2", 0));
    store.markDeleting("vm1", [0, 2]);
    const states = () =>
      store.listNics().map((r) => `${r.vmId}/${r.index}=${r.state}`);
    assert.deepEqual(states(), [
      "vm1/0=deleting",
      "vm1/1=active",
      "vm1/2=deleting",
      "vm2/0=active",
    ]);
    store.markDeleting("vm1");
    assert.deepEqual(states(), [
      "vm1/0=deleting",
      "vm1/1=deleting",
      "vm1/2=deleting",
      "vm2/0=active",
    ]);
  });
});

Deno.test("updateNic replaces the fields of an existing NIC, and refuses an unknown id", async () => {
  await withStore((store) => {
    const r = nic("vm1", 0);
    store.insertNic(r);
    const updated = { ...r, cniResult: { ips: [] }, mac: "0a:58:00:00:00:42" };
    store.updateNic(updated);
    assert.deepEqual(store.getNic(r.id), updated);
    assert.throws(() => store.updateNic(nic("vm1", 5)), /no such NIC/);
  });
});

Deno.test("transaction commits together or rolls back everything", async () => {
  await withStore((store) => {
    store.transaction(() => {
      store.insertNic(nic("vm1", 0));
      store.insertNic(nic("vm1", 1));
    });
    assert.deepEqual(store.usedIndices("vm1"), [0, 1]);

    assert.throws(
      () =>
        store.transaction(() => {
          store.insertNic(nic("vm1", 2));
          store.deleteVm("vm1");
          store.insertNic(nic("vm2", 0));
          store.insertNic(nic("vm2", 0)); // duplicate: the whole batch goes
        }),
      DuplicateNicError,
    );
    assert.deepEqual(store.usedIndices("vm1"), [0, 1]);
    assert.deepEqual(store.listVmIds(), ["vm1"]);

    // A nested failure caught inside keeps the outer writes.
    store.transaction(() => {
      store.insertNic(nic("vm3", 0));
      try {
        store.transaction(() => {
          store.insertNic(nic("vm3", 1));
          throw new Error("inner");
        });
      } catch { /* expected */ }
    });
    assert.deepEqual(store.usedIndices("vm3"), [0]);

    assert.throws(
      () => store.transaction(async () => {}),
      /must be synchronous/,
    );
  });
});

Deno.test("reopening keeps the data and a second store sees the first one's writes", async () => {
  const base = await Deno.makeTempDir({ prefix: "vmnict-store-" });
  try {
    const r = nic("vm1", 0);
    const a = Store.open(base);
    a.insertNic(r);
    const b = Store.open(base);
    assert.deepEqual(b.getNic(r.id), r);
    a.close();
    b.close();
    const c = Store.open(base);
    assert.deepEqual(c.listNics(), [r]);
    c.close();
    assert.throws(() => c.listNics(), /closed/);
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("a database from a newer vmnic is refused, not downgraded", async () => {
  const base = await Deno.makeTempDir({ prefix: "vmnict-store-" });
  try {
    Store.open(base).close();
    const db = new DatabaseSync(join(base, DB_FILE_NAME));
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    assert.throws(
      () => Store.open(base),
      (e: unknown) => e instanceof StoreError && /newer/.test(e.message),
    );
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("lookups use the (vm_id, nic_index) index, not a table scan", async () => {
  await withStore((store) => {
    const db = new DatabaseSync(store.path, { readOnly: true });
    try {
      const plan = (sql: string) =>
        db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all().map((r) =>
          String(r.detail)
        )
          .join("; ");
      for (
        const sql of [
          "SELECT * FROM nics WHERE vm_id = 'x' AND nic_index = 0",
          "SELECT * FROM nics WHERE vm_id = 'x' ORDER BY nic_index",
          "SELECT * FROM nics WHERE id = 'x'",
          "SELECT DISTINCT vm_id FROM nics ORDER BY vm_id",
        ]
      ) {
        const p = plan(sql);
        assert.match(p, /USING (COVERING )?INDEX|USING INDEX/, `${sql}: ${p}`);
        assert.doesNotMatch(p, /TEMP B-TREE/, `${sql}: ${p}`);
      }
    } finally {
      db.close();
    }
  });
});

Deno.test("plugin VERSION answers persist by binary identity", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const info = { cniVersion: "1.0.0", supportedVersions: ["0.4.0", "1.0.0"] };
    const a = Store.open(dir);
    assert.equal(a.getPluginVersion("/usr/lib/cni/bridge|1|2|3"), null);
    a.putPluginVersion("/usr/lib/cni/bridge|1|2|3", info);
    a.close();
    const b = Store.open(dir);
    assert.deepEqual(b.getPluginVersion("/usr/lib/cni/bridge|1|2|3"), info);
    assert.equal(b.getPluginVersion("/usr/lib/cni/bridge|1|2|4"), null);
    b.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
