/**
 * Store cost per NIC operation must not grow with the number of VMs: insert,
 * get and delete one NIC record (of a VM recorded beforehand) in an empty
 * store and in stores that already hold 1000 and 10000 VMs (two NICs each),
 * in the same run. Every write also rewrites the VM's record backup
 * (`<root>/records/<vm>.json`), so that is measured too.
 *
 * Run: deno bench --allow-read --allow-write --allow-ffi --allow-sys=uid
 * bench/store_bench.ts
 *
 * @module
 */
import { Store } from "../src/store/mod.ts";
import {
  newInstallId,
  newNicId,
  type NicRecord,
  type VmRecord,
} from "../src/store/types.ts";

function vm(vmId: string): VmRecord {
  const record = {
    vmId,
    netnsPath: `/var/run/netns/vmnic-${vmId}`,
    network: "vmnic",
    quiesced: false,
    // Not being deleted (a store without the field ignores it).
    deleting: false,
    createdAt: new Date().toISOString(),
  };
  return record;
}

function nic(vmId: string, index: number): NicRecord {
  return {
    id: newNicId(),
    vmId,
    index,
    ifName: `eth${index}`,
    tap: `tap${index}`,
    mac: "0a:58:0a:58:00:05",
    network: "vmnic",
    netnsPath: `/var/run/netns/vmnic-${vmId}`,
    numQueues: 2,
    queueSize: 512,
    mtu: 1500,
    ips: [{
      address: "10.88.0.5",
      prefix: 16,
      gateway: "10.88.0.1",
      version: 4,
    }],
    dns: {},
    cniResult: { cniVersion: "1.0.0", ips: [{ address: "10.88.0.5/16" }] },
    cniConfig: '{"cniVersion":"1.0.0","name":"vmnic","plugins":[]}',
    containerId: `vmnic-${vmId}`,
    state: "active",
    error: null,
    createdAt: new Date().toISOString(),
  };
}

/** The VM of the round trip's NIC (NICs reference a recorded VM). */
const BENCH_VM = "bench-vm";

const dirs: string[] = [];
const stores: Store[] = [];

function storeWithVms(vms: number): Store {
  const dir = Deno.makeTempDirSync({ prefix: "vmnic-bench-" });
  dirs.push(dir);
  const store = Store.open(dir);
  stores.push(store);
  store.initialize(newInstallId());
  store.transaction(() => {
    // The VM whose NIC the round trip inserts and deletes.
    store.insertVm(vm(BENCH_VM));
    for (let v = 0; v < vms; v++) {
      store.insertVm(vm(`vm${v}`));
      store.insertNic(nic(`vm${v}`, 0));
      store.insertNic(nic(`vm${v}`, 1));
    }
  });
  return store;
}

globalThis.addEventListener("unload", () => {
  for (const s of stores) s.close();
  for (const d of dirs) Deno.removeSync(d, { recursive: true });
});

for (const vms of [0, 1000, 10000]) {
  const store = storeWithVms(vms);
  Deno.bench({
    name: `insert+get+delete one NIC with ${vms} VMs recorded`,
    group: "nic round trip",
    baseline: vms === 0,
    fn() {
      const r = nic(BENCH_VM, 0);
      store.insertNic(r);
      if (store.getNicByIndex(r.vmId, 0)?.id !== r.id) throw new Error("lost");
      if (store.getNic(r.id) === null) throw new Error("lost");
      store.deleteNic(r.vmId, 0);
    },
  });
  Deno.bench({
    name: `list one VM's NICs with ${vms} VMs recorded`,
    group: "list one vm",
    baseline: vms === 0,
    fn() {
      store.listNics({ vmId: "vm0" });
      store.usedIndices("vm0");
    },
  });
}
