import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import {
  DB_FILE_NAME,
  DuplicateMacError,
  DuplicateNicError,
  newInstallId,
  newNicId,
  type NicRecord,
  SCHEMA_VERSION,
  Store,
  StoreError,
  type VmRecord,
} from "../../src/store/mod.ts";

function nic(vmId: string, index: number, extra: Partial<NicRecord> = {}) {
  const rec: NicRecord = {
    id: newNicId(),
    vmId,
    index,
    ifName: `eth${index}`,
    tap: `tap${index}`,
    mac: `0a:58:${randomMacTail()}`,
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
    error: null,
    announced: false,
    createdAt: new Date().toISOString(),
    ...extra,
  };
  return rec;
}

/** Four random octets: MACs are unique within an install. */
function randomMacTail(): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(4)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join(":");
}

function vm(vmId: string, extra: Partial<VmRecord> = {}): VmRecord {
  return {
    vmId,
    netnsPath: `/var/run/netns/vmnic-${vmId}`,
    network: "vmnic",
    quiesced: false,
    deleting: false,
    slot: null,
    claimVm: null,
    createdAt: new Date().toISOString(),
    ...extra,
  };
}

/** Inserts the VM row (once) and the NIC, as the provider does. */
function put(store: Store, rec: NicRecord): void {
  store.transaction(() => {
    store.insertVm(vm(rec.vmId));
    store.insertNic(rec);
  });
}

/** A store on a fresh root dir, initialized with an install id. */
function openFresh(dir: string): Store {
  const store = Store.open(dir);
  if (store.installId === null) store.initialize(newInstallId());
  return store;
}

async function withStore(
  fn: (store: Store, dir: string) => void | Promise<void>,
) {
  const base = await Deno.makeTempDir({ prefix: "vmnict-store-" });
  const dir = join(base, "root");
  const store = openFresh(dir);
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
    put(store, b1);
    put(store, a0);
    put(store, b0);

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
    // A VM row goes only once its NICs are gone: the records never lose one.
    assert.throws(() => store.deleteVm("vm-b"), StoreError);
    store.deleteNic("vm-b", 1);
    assert.equal(store.deleteVm("vm-b"), true);
    assert.equal(store.deleteVm("vm-b"), false);
    assert.deepEqual(store.listVmIds(), ["vm-a"]);
  });
});

Deno.test("the exact conflist text is kept byte for byte", async () => {
  await withStore((store) => {
    const text =
      '{\n  "cniVersion": "1.0.0",  "name": "x", "plugins": [ ]\n}\n';
    const r = nic("vm1", 0, { cniConfig: text });
    put(store, r);
    assert.equal(store.getNic(r.id)?.cniConfig, text);
  });
});

Deno.test("a duplicate (vmId, index) throws DuplicateNicError and changes nothing", async () => {
  await withStore((store) => {
    const first = nic("vm1", 0);
    put(store, first);
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
    put(store, first);
    store.insertVm(vm("vm2"));
    assert.throws(
      () => store.insertNic(nic("vm2", 0, { id: first.id })),
      (e: unknown) =>
        e instanceof StoreError && !(e instanceof DuplicateNicError) &&
        e.op === "insert nic" && e.object === "vm2",
    );
    assert.deepEqual(store.listNics().map((n) => n.vmId), ["vm1"]);
  });
});

Deno.test("invalid values are refused by the schema with a StoreError", async () => {
  await withStore((store) => {
    store.insertVm(vm("vm1"));
    assert.throws(
      () => store.insertNic(nic("vm1", -1)),
      (e: unknown) => e instanceof StoreError && /CHECK/.test(e.message),
    );
    assert.throws(
      () => store.insertNic(nic("vm1", 0, { state: "bogus" as "active" })),
      StoreError,
    );
    // A NIC of a VM that has no record is refused (foreign key).
    assert.throws(() => store.insertNic(nic("vm-none", 0)), StoreError);
    assert.deepEqual(store.listNics(), []);
  });
});

Deno.test("setNicState moves all NICs of a VM or the given indices; failed keeps its error", async () => {
  await withStore((store) => {
    for (const i of [0, 1, 2]) put(store, nic("vm1", i));
    put(store, nic("vm2", 0));
    store.setNicState("vm1", "deleting", { indices: [0, 2] });
    const states = () =>
      store.listNics().map((r) => `${r.vmId}/${r.index}=${r.state}`);
    assert.deepEqual(states(), [
      "vm1/0=deleting",
      "vm1/1=active",
      "vm1/2=deleting",
      "vm2/0=active",
    ]);
    store.setNicState("vm1", "deleting");
    assert.deepEqual(states(), [
      "vm1/0=deleting",
      "vm1/1=deleting",
      "vm1/2=deleting",
      "vm2/0=active",
    ]);
    store.setNicState("vm1", "failed", { indices: [1], error: "DEL: boom" });
    assert.equal(store.getNicByIndex("vm1", 1)?.error, "DEL: boom");
    store.setNicState("vm1", "deleting", { indices: [1] });
    assert.equal(store.getNicByIndex("vm1", 1)?.error, null);
  });
});

Deno.test("markVmDeleting marks the VM and its NICs but the failed ones", async () => {
  await withStore((store) => {
    put(store, nic("vm1", 0));
    put(store, nic("vm1", 1, { state: "failed", error: "x" }));
    put(store, nic("vm2", 0));
    store.markVmDeleting("vm1");
    assert.equal(store.getVm("vm1")?.deleting, true);
    assert.equal(store.getVm("vm2")?.deleting, false);
    assert.deepEqual(
      store.listNics().map((n) => `${n.vmId}/${n.index}=${n.state}`),
      ["vm1/0=deleting", "vm1/1=failed", "vm2/0=active"],
    );
  });
});

Deno.test("setQuiesced records the VM and moves its live NICs between active and quiesced", async () => {
  await withStore((store) => {
    put(store, nic("vm1", 0));
    put(store, nic("vm1", 1, { state: "failed", error: "x" }));
    store.setQuiesced("vm1", true);
    assert.equal(store.getVm("vm1")?.quiesced, true);
    assert.deepEqual(store.listNics().map((n) => n.state), [
      "quiesced",
      "failed",
    ]);
    store.setQuiesced("vm1", false);
    assert.equal(store.getVm("vm1")?.quiesced, false);
    assert.deepEqual(store.listNics().map((n) => n.state), [
      "active",
      "failed",
    ]);
  });
});

Deno.test("updateNic replaces the fields of an existing NIC, and refuses an unknown id", async () => {
  await withStore((store) => {
    const r = nic("vm1", 0);
    put(store, r);
    const updated = { ...r, cniResult: { ips: [] }, mac: "0a:58:00:00:00:42" };
    store.updateNic(updated);
    assert.deepEqual(store.getNic(r.id), updated);
    assert.throws(() => store.updateNic(nic("vm1", 5)), /no such NIC/);
  });
});

Deno.test("transaction commits together or rolls back everything", async () => {
  await withStore((store) => {
    store.transaction(() => {
      put(store, nic("vm1", 0));
      put(store, nic("vm1", 1));
    });
    assert.deepEqual(store.usedIndices("vm1"), [0, 1]);

    assert.throws(
      () =>
        store.transaction(() => {
          put(store, nic("vm1", 2));
          store.deleteNic("vm1", 0);
          put(store, nic("vm2", 0));
          store.insertNic(nic("vm2", 0)); // duplicate: the whole batch goes
        }),
      DuplicateNicError,
    );
    assert.deepEqual(store.usedIndices("vm1"), [0, 1]);
    assert.deepEqual(store.listVmIds(), ["vm1"]);

    // A nested failure caught inside keeps the outer writes.
    store.transaction(() => {
      put(store, nic("vm3", 0));
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
    const a = openFresh(base);
    put(a, r);
    const b = Store.open(base);
    assert.equal(b.installId, a.installId);
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
          "SELECT vm_id FROM vms ORDER BY vm_id",
          "SELECT * FROM nics WHERE mac = 'x' AND mac <> ''",
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

Deno.test("every write backs up the VM's records before it commits; a VM gone takes its backup", async () => {
  await withStore((store, dir) => {
    const backup = (id: string) =>
      JSON.parse(
        Deno.readTextFileSync(join(dir, "records", `${id}.jsonl`)).trimEnd()
          .split("\n").at(-1)!,
      );
    const a0 = nic("vm1", 0);
    put(store, a0);
    let b = backup("vm1");
    assert.equal(b.installId, store.installId);
    assert.equal(b.vm.vmId, "vm1");
    assert.deepEqual(b.nics, [a0]);
    store.setNicState("vm1", "failed", { indices: [0], error: "e" });
    b = backup("vm1");
    assert.equal(b.nics[0].state, "failed");
    assert.equal(b.nics[0].error, "e");
    // A backup that cannot be written (a full disk) never stops the change
    // (a teardown must free space): it is removed, not left behind.
    const path = join(dir, "records", "vm1.jsonl");
    Deno.removeSync(path);
    Deno.mkdirSync(path); // appending to it fails, as on a full disk
    store.setNicState("vm1", "deleting", { indices: [0] });
    assert.equal(store.getNicByIndex("vm1", 0)?.state, "deleting");
    assert.throws(() => Deno.statSync(path), Deno.errors.NotFound);
    store.setNicState("vm1", "failed", { indices: [0], error: "again" });
    assert.equal(
      backup("vm1").nics[0].error,
      "again",
      "written again next change",
    );
    store.deleteNic("vm1", 0);
    store.deleteVm("vm1");
    assert.throws(() => backup("vm1"), Deno.errors.NotFound);
  });
});

Deno.test("a truncated database opens fresh and restoreFromBackups brings back every record and the install id", async () => {
  const base = await Deno.makeTempDir({ prefix: "vmnict-store-" });
  try {
    const a = openFresh(base);
    const install = a.installId;
    const recs = [nic("vm1", 0), nic("vm1", 1), nic("vm2", 0)];
    for (const r of recs) put(a, r);
    a.setQuiesced("vm2", true);
    const vms = a.listVms();
    a.close();
    Deno.truncateSync(join(base, DB_FILE_NAME), 0);
    for (const side of ["-wal", "-shm"]) {
      try {
        Deno.removeSync(join(base, DB_FILE_NAME + side));
      } catch { /* closing checkpointed and removed it */ }
    }
    assert.equal(Store.exists(base), false);
    const b = Store.open(base);
    try {
      assert.equal(b.installId, null, "a truncated db is fresh");
      assert.deepEqual(b.listNics(), []);
      assert.deepEqual(b.backups().vmIds, ["vm1", "vm2"]);
      assert.deepEqual(b.restoreFromBackups(), ["vm1", "vm2"]);
      assert.equal(b.installId, install);
      assert.deepEqual(b.listVms(), vms);
      assert.deepEqual(
        b.listNics().map((n) => [n.id, n.state]),
        [[recs[0].id, "active"], [recs[1].id, "active"], [
          recs[2].id,
          "quiesced",
        ]],
      );
      assert.throws(() => b.restoreFromBackups(), /not empty/);
    } finally {
      b.close();
    }
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("a v2 database (NICs only) migrates: VM rows made, install id given, NICs kept", async () => {
  const base = await Deno.makeTempDir({ prefix: "vmnict-store-" });
  try {
    const path = join(base, DB_FILE_NAME);
    const db = new DatabaseSync(path);
    const { MIGRATIONS } = await import("../../src/store/schema.ts");
    db.exec(MIGRATIONS[0].sql + MIGRATIONS[1].sql);
    db.exec("PRAGMA user_version = 2");
    db.prepare(
      `INSERT INTO nics VALUES ('abc', 'vm1', 1, 'eth1', 'tap1', '0a:00:00:00:00:01',
       'net1', '/var/run/netns/vmnic-vm1', 1, 256, 1500, '[]', '{}', 'null', '{}',
       'vmnic-vm1', 'active', '2026-01-01T00:00:00.000Z')`,
    ).run();
    db.close();
    const store = Store.open(base);
    try {
      assert.match(store.installId ?? "", /^[0-9a-f]{8}$/);
      assert.deepEqual(store.getVm("vm1"), {
        vmId: "vm1",
        netnsPath: "/var/run/netns/vmnic-vm1",
        network: "net1",
        quiesced: false,
        deleting: false,
        slot: null,
        claimVm: null,
        createdAt: "2026-01-01T00:00:00.000Z",
      });
      const n = store.getNic("abc")!;
      assert.equal(n.state, "active");
      assert.equal(n.error, null);
      assert.equal(n.containerId, "vmnic-vm1", "old container ids are kept");
    } finally {
      store.close();
    }
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("a symlink where the database or its side files go is refused, and its target is left as it is", async () => {
  const base = await Deno.makeTempDir({ prefix: "vmnict-store-" });
  try {
    const target = join(base, "secret");
    Deno.writeTextFileSync(target, "keep me");
    Deno.chmodSync(target, 0o644);
    for (const name of [DB_FILE_NAME, `${DB_FILE_NAME}-wal`]) {
      const root = join(base, `root-${name}`);
      Deno.mkdirSync(root, { mode: 0o700 });
      Deno.symlinkSync(target, join(root, name));
      assert.throws(
        () => Store.open(root),
        (e: unknown) =>
          e instanceof StoreError && /symlink/.test(e.message) &&
          e.message.includes(name),
      );
    }
    assert.equal(Deno.statSync(target).mode! & 0o777, 0o644);
    assert.equal(Deno.readTextFileSync(target), "keep me");
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("a root dir others can write to (or under such a parent) is refused, naming it", async () => {
  const base = await Deno.makeTempDir({ prefix: "vmnict-store-" });
  try {
    const open = join(base, "open");
    Deno.mkdirSync(open);
    Deno.chmodSync(open, 0o777);
    assert.throws(
      () => Store.open(open),
      (e: unknown) =>
        e instanceof StoreError && e.message.includes(open) &&
        /world-writable/.test(e.message),
    );
    const grp = join(base, "grp");
    Deno.mkdirSync(join(grp, "root"), { recursive: true });
    Deno.chmodSync(grp, 0o775);
    assert.throws(
      () => Store.open(join(grp, "root")),
      (e: unknown) =>
        e instanceof StoreError && /group-writable/.test(e.message),
    );
    assert.throws(
      () => Deno.statSync(join(open, DB_FILE_NAME)),
      Deno.errors.NotFound,
    );
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("stores opened at once on a fresh root dir end with one install id: the first to initialize names it", async () => {
  const base = await Deno.makeTempDir({ prefix: "vmnict-store-" });
  const dir = join(base, "root");
  const a = Store.open(dir);
  const b = Store.open(dir);
  try {
    assert.equal(a.installId, null);
    assert.equal(b.installId, null);
    a.initialize("0000aaaa");
    b.initialize("0000bbbb");
    assert.equal(a.installId, "0000aaaa");
    assert.equal(b.installId, "0000aaaa", "the second takes the first's id");
    assert.equal(b.backups().installId, "0000aaaa");
    const c = Store.open(dir);
    assert.equal(c.installId, "0000aaaa");
    c.close();
  } finally {
    a.close();
    b.close();
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("writes before initialize are refused (a backup needs an owner)", async () => {
  const base = await Deno.makeTempDir({ prefix: "vmnict-store-" });
  try {
    const store = Store.open(base);
    try {
      assert.equal(store.installId, null);
      assert.throws(() => store.insertVm(vm("vm1")), /not initialized/);
      store.initialize("0123abcd");
      store.insertVm(vm("vm1"));
      assert.throws(() => store.initialize("ffffffff"), /already initialized/);
    } finally {
      store.close();
    }
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("nicsWithMac finds the NIC holding a MAC across VMs", async () => {
  await withStore((store) => {
    const a = nic("vm1", 0, { mac: "0a:00:00:00:00:07" });
    put(store, a);
    put(store, nic("vm2", 0, { mac: "0a:00:00:00:00:08" }));
    assert.deepEqual(store.nicsWithMac("0a:00:00:00:00:07").map((n) => n.id), [
      a.id,
    ]);
    assert.deepEqual(store.nicsWithMac("0a:00:00:00:00:09"), []);
  });
});

Deno.test("a backup log survives a torn last line and is compacted as it grows", async () => {
  await withStore((store, dir) => {
    const path = join(dir, "records", "vm1.jsonl");
    const r = nic("vm1", 0);
    put(store, r);
    for (let i = 0; i < 200; i++) store.updateNic({ ...r, mtu: 1000 + i });
    const lines = Deno.readTextFileSync(path).trimEnd().split("\n");
    assert.ok(lines.length < 150, `compacted: ${lines.length} lines`);
    assert.ok(Deno.statSync(path).size <= 64 * 1024 + 4096);
    // A crash in the middle of an append leaves half a line: the one before
    // it is the database's state (its transaction never committed).
    Deno.writeTextFileSync(path, '{"format":1,"installId":"x","vm":{', {
      append: true,
    });
    store.close();
    Deno.removeSync(join(dir, DB_FILE_NAME));
    const again = Store.open(dir);
    try {
      again.restoreFromBackups();
      assert.equal(again.getNic(r.id)?.mtu, 1199);
    } finally {
      again.close();
    }
  });
});

Deno.test("a MAC is one NIC's within an install: a second is DuplicateMacError, nothing changed", async () => {
  await withStore((store) => {
    const a = nic("vm1", 0, { mac: "0a:00:00:00:00:01" });
    put(store, a);
    store.insertVm(vm("vm2"));
    assert.throws(
      () => store.insertNic(nic("vm2", 0, { mac: "0a:00:00:00:00:01" })),
      (e: unknown) => e instanceof DuplicateMacError && e.mac === a.mac,
    );
    // Not yet plumbed NICs have no MAC: any number of them.
    store.insertNic(nic("vm2", 0, { mac: "" }));
    store.insertNic(nic("vm2", 1, { mac: "" }));
    assert.equal(store.listNics({ vmId: "vm2" }).length, 2);
  });
});
