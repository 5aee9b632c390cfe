/**
 * hypervisorArgs: the exact arguments per hypervisor, the refusals, and,
 * when qemu-system-x86_64 is installed, QEMU itself as the judge: every
 * `-netdev tap` key is one of its NetdevTapOptions (QMP schema) and every
 * `-device` string is realized by a real (paused, TCG) QEMU with a hubport
 * standing in for the TAP, so no TAP is opened and no root is needed.
 */
import assert from "node:assert/strict";
import {
  type Hypervisor,
  hypervisorArgs,
  HYPERVISORS,
} from "../../src/provider/hv_args.ts";
import { InvalidInputError, NotFoundError } from "../../src/provider/errors.ts";
import type { NicConfig } from "../../src/provider/types.ts";

const NETNS = "/var/run/netns/vmnic-vm1";
const MAC0 = "0a:58:0a:4d:00:05";
const MAC1 = "0a:58:0a:4d:00:06";

/** A NIC as `list` returns it; single-queue, queue size 256, active. */
function nic(
  index: number,
  mac: string | undefined,
  over: Partial<NicConfig> = {},
): NicConfig {
  return {
    id: `id${index}`,
    vmId: "vm1",
    index,
    ifName: `eth${index}`,
    tap: `tap${index}`,
    mac,
    network: "vmnic-test",
    netnsPath: NETNS,
    numQueues: 1,
    queueSize: 256,
    mtu: 1500,
    ips: [{ address: `10.77.0.${5 + index}`, prefix: 24, version: 4 }],
    routes: [],
    dns: {},
    state: "active",
    createdAt: "2026-01-01T00:00:00.000Z",
    ...over,
  };
}

/** Two NICs, NIC 1 with two queue pairs, given out of order. */
const TWO = (): NicConfig[] => [
  nic(1, MAC1, { numQueues: 2, state: "quiesced" }),
  nic(0, MAC0),
];

const QEMU_TWO = [
  "-netdev",
  "tap,id=net0,ifname=tap0,script=no,downscript=no",
  "-device",
  `virtio-net-pci,netdev=net0,mac=${MAC0},rx_queue_size=256`,
  "-netdev",
  "tap,id=net1,ifname=tap1,script=no,downscript=no,queues=2",
  "-device",
  `virtio-net-pci,netdev=net1,mac=${MAC1},mq=on,vectors=6,rx_queue_size=256`,
];

/** Asserts `fn` throws `cls` with that op, object and a reason matching `re`. */
function assertRefused(
  fn: () => unknown,
  cls: typeof InvalidInputError | typeof NotFoundError,
  object: string,
  re: RegExp,
): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e}`);
    assert.equal(e.op, "hv-args");
    assert.equal(e.object, object);
    assert.match(e.reason, re);
    return true;
  });
}

Deno.test("launch: nsenter into the VM's netns, for every hypervisor", () => {
  for (const hv of HYPERVISORS) {
    const r = hypervisorArgs("vm1", [nic(0, MAC0)], hv);
    assert.equal(r.hypervisor, hv);
    assert.equal(r.vmId, "vm1");
    assert.equal(r.netnsPath, NETNS);
    assert.deepEqual(r.launch.nsenter, ["nsenter", `--net=${NETNS}`, "--"]);
    assert.match(r.launch.note, /netns/);
    assert.match(r.launch.note, /setns/);
    assert.deepEqual(r.notes, []);
  }
});

Deno.test("qemu: one single-queue NIC", () => {
  const r = hypervisorArgs("vm1", [nic(0, MAC0)], "qemu");
  assert.deepEqual(r.args, [
    "-netdev",
    "tap,id=net0,ifname=tap0,script=no,downscript=no",
    "-device",
    `virtio-net-pci,netdev=net0,mac=${MAC0},rx_queue_size=256`,
  ]);
  assert.equal(r.networkInterfaces, undefined);
});

Deno.test("qemu: two NICs in index order, the multi-queue one with mq and 2Q+2 vectors", () => {
  const r = hypervisorArgs("vm1", TWO(), "qemu");
  assert.deepEqual(r.args, QEMU_TWO);
  assert.deepEqual(r.notes, []);
});

Deno.test("qemu: vhost=on only when asked", () => {
  const r = hypervisorArgs("vm1", TWO(), "qemu", { vhost: true });
  assert.deepEqual(r.args.filter((_, k) => k % 4 === 1), [
    "tap,id=net0,ifname=tap0,script=no,downscript=no,vhost=on",
    "tap,id=net1,ifname=tap1,script=no,downscript=no,queues=2,vhost=on",
  ]);
  assert.ok(
    !hypervisorArgs("vm1", TWO(), "qemu", { vhost: false }).args.join(" ")
      .includes("vhost"),
  );
});

Deno.test("qemu: rx_queue_size only for a power of two in [256, 1024]; never tx_queue_size", () => {
  for (const size of [256, 512, 1024]) {
    const r = hypervisorArgs(
      "vm1",
      [nic(0, MAC0, { queueSize: size })],
      "qemu",
    );
    assert.equal(
      r.args[3],
      `virtio-net-pci,netdev=net0,mac=${MAC0},rx_queue_size=${size}`,
    );
    assert.deepEqual(r.notes, []);
  }
  for (const size of [1, 128, 300, 2048, 32768]) {
    const r = hypervisorArgs(
      "vm1",
      [nic(0, MAC0, { queueSize: size })],
      "qemu",
    );
    assert.equal(r.args[3], `virtio-net-pci,netdev=net0,mac=${MAC0}`);
    assert.equal(r.notes.length, 1);
    assert.match(r.notes[0], new RegExp(`^vm1/0: queue size ${size} left out`));
    assert.match(r.notes[0], /power of two in \[256, 1024\]/);
  }
  assert.ok(
    !hypervisorArgs("vm1", TWO(), "qemu").args.join(" ").includes(
      "tx_queue_size",
    ),
  );
});

Deno.test("qemu: the MAC is given in lower case", () => {
  const r = hypervisorArgs("vm1", [nic(0, "0A:58:0A:4D:00:05")], "qemu");
  assert.match(r.args[3], new RegExp(`mac=${MAC0},`));
});

Deno.test("cloud-hypervisor: one --net with one value per NIC", () => {
  assert.deepEqual(
    hypervisorArgs("vm1", [nic(0, MAC0)], "cloud-hypervisor").args,
    [
      "--net",
      `tap=tap0,mac=${MAC0},num_queues=2,queue_size=256`,
    ],
  );
  const r = hypervisorArgs("vm1", TWO(), "cloud-hypervisor");
  assert.deepEqual(r.args, [
    "--net",
    `tap=tap0,mac=${MAC0},num_queues=2,queue_size=256`,
    `tap=tap1,mac=${MAC1},num_queues=4,queue_size=256`,
  ]);
  assert.equal(r.networkInterfaces, undefined);
  assert.deepEqual(r.notes, []);
});

Deno.test("cloud-hypervisor: queue_size only for a power of two", () => {
  const big = hypervisorArgs(
    "vm1",
    [nic(0, MAC0, { queueSize: 4096 })],
    "cloud-hypervisor",
  );
  assert.equal(
    big.args[1],
    `tap=tap0,mac=${MAC0},num_queues=2,queue_size=4096`,
  );
  const odd = hypervisorArgs(
    "vm1",
    [nic(0, MAC0, { queueSize: 300 })],
    "cloud-hypervisor",
  );
  assert.equal(odd.args[1], `tap=tap0,mac=${MAC0},num_queues=2`);
  assert.equal(odd.notes.length, 1);
  assert.match(
    odd.notes[0],
    /^vm1\/0: queue size 300 left out: .*power of two/,
  );
});

Deno.test("firecracker: network-interfaces entries, no args", () => {
  const one = hypervisorArgs("vm1", [nic(0, MAC0)], "firecracker");
  assert.deepEqual(one.args, []);
  assert.deepEqual(one.networkInterfaces, [
    { iface_id: "net0", host_dev_name: "tap0", guest_mac: MAC0 },
  ]);
  const two = hypervisorArgs(
    "vm1",
    [nic(1, MAC1), nic(0, MAC0)],
    "firecracker",
  );
  assert.deepEqual(two.networkInterfaces, [
    { iface_id: "net0", host_dev_name: "tap0", guest_mac: MAC0 },
    { iface_id: "net1", host_dev_name: "tap1", guest_mac: MAC1 },
  ]);
  assert.deepEqual(two.notes, []);
});

Deno.test("firecracker: a queue size other than its fixed 256 gets a note", () => {
  const r = hypervisorArgs(
    "vm1",
    [nic(0, MAC0, { queueSize: 512 })],
    "firecracker",
  );
  assert.equal(r.networkInterfaces?.length, 1);
  assert.deepEqual(r.notes.length, 1);
  assert.match(
    r.notes[0],
    /^vm1\/0: queue size 512 not applied: .*fixed at 256/,
  );
});

Deno.test("firecracker: a multi-queue NIC is refused, saying how to get out", () => {
  assertRefused(
    () => hypervisorArgs("vm1", TWO(), "firecracker"),
    InvalidInputError,
    "vm1/1",
    /2 queue pairs, but Firecracker's virtio-net is single-queue: re-add the NIC with --queues 1/,
  );
  try {
    hypervisorArgs("vm1", TWO(), "firecracker");
  } catch (e) {
    assert.match(
      (e as Error).message,
      new RegExp(
        "^hv-args vm1/1: .*\\(vmnic remove vm1 1; vmnic add vm1 --index 1 " +
          `--network vmnic-test --mac ${MAC1} --ip 10\\.77\\.0\\.6/24 --queues 1\\)$`,
      ),
    );
  }
});

Deno.test("an unknown hypervisor is refused, listing the known ones", () => {
  assertRefused(
    () => hypervisorArgs("vm1", [nic(0, MAC0)], "crosvm" as Hypervisor),
    InvalidInputError,
    "vm1",
    /unknown hypervisor "crosvm": expected one of qemu, cloud-hypervisor, firecracker/,
  );
});

Deno.test("no NICs: NotFoundError", () => {
  for (const hv of HYPERVISORS) {
    assertRefused(
      () => hypervisorArgs("vm1", [], hv),
      NotFoundError,
      "vm1",
      /no NICs/,
    );
  }
});

Deno.test("NICs that cannot go to a hypervisor are refused", () => {
  for (const state of ["adding", "deleting", "failed"] as const) {
    assertRefused(
      () =>
        hypervisorArgs("vm1", [nic(0, MAC0), nic(1, MAC1, { state })], "qemu"),
      InvalidInputError,
      "vm1/1",
      new RegExp(`the NIC is ${state}: only active or quiesced`),
    );
  }
  assertRefused(
    () => hypervisorArgs("vm1", [nic(0, undefined)], "qemu"),
    InvalidInputError,
    "vm1/0",
    /no MAC/,
  );
  assertRefused(
    () => hypervisorArgs("vm1", [nic(0, "0a:58:0a:4d:00:05,vhost=on")], "qemu"),
    InvalidInputError,
    "vm1/0",
    /invalid MAC/,
  );
  assertRefused(
    () => hypervisorArgs("vm1", [nic(0, MAC0, { vmId: "vm2" })], "qemu"),
    InvalidInputError,
    "vm1/0",
    /belongs to VM vm2/,
  );
  assertRefused(
    () =>
      hypervisorArgs(
        "vm1",
        [nic(0, MAC0), nic(1, MAC1, { netnsPath: "/x" })],
        "qemu",
      ),
    InvalidInputError,
    "vm1/1",
    /netns \/x/,
  );
  assertRefused(
    () => hypervisorArgs("vm1", [nic(0, MAC0), nic(0, MAC1)], "qemu"),
    InvalidInputError,
    "vm1/0",
    /given twice/,
  );
  assertRefused(
    () =>
      hypervisorArgs("vm1", [nic(0, MAC0, { tap: "tap0,script=/x" })], "qemu"),
    InvalidInputError,
    "vm1/0",
    /invalid TAP name/,
  );
  assertRefused(
    () => hypervisorArgs("vm1", [nic(32, MAC0)], "qemu"),
    InvalidInputError,
    "vm1/32",
    /invalid NIC index/,
  );
  assertRefused(
    () => hypervisorArgs("vm1", [nic(0, MAC0, { numQueues: 0 })], "qemu"),
    InvalidInputError,
    "vm1/0",
    /queue pair count 0/,
  );
});

// ---- QEMU as the judge -------------------------------------------------

const QEMU = "qemu-system-x86_64";

/** Whether QEMU is installed, and why not when it is not. */
async function qemuMissing(): Promise<string | undefined> {
  try {
    const out = await new Deno.Command(QEMU, {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success ? undefined : `${QEMU} --version failed`;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return `${QEMU} not installed`;
    throw e;
  }
}

const missing = await qemuMissing();

/** A test that needs QEMU: ignored, with the reason in its name, without it. */
function qemuTest(name: string, fn: () => Promise<void>): void {
  Deno.test({
    name: missing ? `${name} (skipped: ${missing})` : name,
    ignore: missing !== undefined,
    fn,
  });
}

/**
 * Runs QEMU paused (`-S`, TCG, no display, no default devices) with a QMP
 * monitor on stdio, sends `commands` then `quit`, and returns what it said.
 * A device QEMU cannot realize makes it exit non-zero before QMP starts.
 */
async function qemuQmp(
  args: string[],
  commands: object[] = [],
): Promise<
  { code: number; replies: Record<string, unknown>[]; stderr: string }
> {
  const child = new Deno.Command(QEMU, {
    args: ["-S", "-display", "none", "-nodefaults", "-qmp", "stdio", ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).spawn();
  const input = [{ execute: "qmp_capabilities" }, ...commands, {
    execute: "quit",
  }]
    .map((c) => JSON.stringify(c) + "\n").join("");
  const w = child.stdin.getWriter();
  // QEMU may already be gone (a device it refused): the write may fail.
  await w.write(new TextEncoder().encode(input)).catch(() => {});
  await w.close().catch(() => {});
  const out = await child.output();
  const dec = new TextDecoder();
  const replies = dec.decode(out.stdout).split("\n").filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { code: out.code, replies, stderr: dec.decode(out.stderr) };
}

/** `key=value,...` → the keys, after the leading driver/type word. */
function optionKeys(s: string): string[] {
  return s.split(",").slice(1).map((kv) => kv.split("=")[0]);
}

/** The `-netdev` and `-device` values of QEMU args, in order. */
function qemuPairs(args: string[]): { netdev: string; device: string }[] {
  const pairs: { netdev: string; device: string }[] = [];
  for (let k = 0; k < args.length; k += 4) {
    assert.equal(args[k], "-netdev");
    assert.equal(args[k + 2], "-device");
    pairs.push({ netdev: args[k + 1], device: args[k + 3] });
  }
  return pairs;
}

/**
 * The QEMU args with each TAP netdev replaced by a hubport of the same id:
 * the devices are realized for real, no TAP is opened.
 */
function withHubports(args: string[]): string[] {
  return qemuPairs(args).flatMap(({ netdev, device }, k) => {
    const id = netdev.split(",").find((kv) => kv.startsWith("id="))!;
    return ["-netdev", `hubport,${id},hubid=${k}`, "-device", device];
  });
}

interface SchemaType {
  name: string;
  "meta-type": string;
  members?: { name: string }[];
  tag?: string;
  variants?: { case: string; type: string }[];
}

qemuTest(
  "qemu (real): every -netdev tap key is in QEMU's NetdevTapOptions",
  async () => {
    const r = await qemuQmp(["-M", "none"], [{ execute: "query-qmp-schema" }]);
    assert.equal(r.code, 0, r.stderr);
    const schema = r.replies.find((x) => Array.isArray(x.return))
      ?.return as SchemaType[];
    assert.ok(schema, "no query-qmp-schema reply");
    const byName = new Map(schema.map((t) => [t.name, t]));
    // The Netdev union: base members id and type, one variant per backend.
    const netdev = schema.find((t) =>
      t["meta-type"] === "object" && t.tag === "type" &&
      t.members?.some((m) => m.name === "id") &&
      t.variants?.some((v) => v.case === "tap") &&
      t.variants?.some((v) => v.case === "hubport")
    );
    assert.ok(netdev, "no Netdev union in the schema");
    const tapType = byName.get(
      netdev.variants!.find((v) => v.case === "tap")!.type,
    );
    const allowed = new Set([
      ...netdev.members!.map((m) => m.name),
      ...tapType!.members!.map((m) => m.name),
    ]);
    assert.ok(
      allowed.has("ifname") && allowed.has("queues"),
      [...allowed].join(),
    );

    for (const vhost of [false, true]) {
      for (
        const { netdev: value } of qemuPairs(
          hypervisorArgs("vm1", TWO(), "qemu", { vhost }).args,
        )
      ) {
        assert.ok(value.startsWith("tap,"), value);
        for (const key of optionKeys(value)) {
          assert.ok(allowed.has(key), `-netdev tap key ${key} unknown to QEMU`);
        }
      }
    }
  },
);

qemuTest(
  "qemu (real): every -device key is a virtio-net-pci property",
  async () => {
    const out = await new Deno.Command(QEMU, {
      args: ["-device", "virtio-net-pci,help"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    const props = new Set(
      [...text.matchAll(/^\s+([a-z0-9_-]+)=</gm)].map((m) => m[1]),
    );
    assert.ok(props.has("mac") && props.has("rx_queue_size"), text);
    const args = hypervisorArgs("vm1", TWO(), "qemu").args;
    for (const { device } of qemuPairs(args)) {
      assert.ok(device.startsWith("virtio-net-pci,"), device);
      for (const key of optionKeys(device)) {
        assert.ok(props.has(key), `virtio-net-pci has no property ${key}`);
      }
    }
  },
);

qemuTest(
  "qemu (real): QEMU realizes the -device strings and reads back every value",
  async () => {
    const nics = [
      nic(0, MAC0),
      nic(1, MAC1, { numQueues: 2, queueSize: 1024 }),
      nic(2, "0a:58:0a:4d:00:07", { numQueues: 4, queueSize: 300 }),
    ];
    const args = hypervisorArgs("vm1", nics, "qemu").args;
    assert.ok(
      args.includes(
        `virtio-net-pci,netdev=net1,mac=${MAC1},mq=on,vectors=6,rx_queue_size=1024`,
      ),
    );
    // One qom-get per emitted property of each device (device[k] is the
    // k-th -device without an id), answered by id.
    const expected = new Map<string, unknown>();
    const gets: object[] = [];
    qemuPairs(args).forEach(({ device }, k) => {
      for (const kv of device.split(",").slice(1)) {
        const [key, value] = kv.split("=");
        const id = `${k}:${key}`;
        expected.set(
          id,
          value === "on" ? true : /^\d+$/.test(value) ? Number(value) : value,
        );
        gets.push({
          execute: "qom-get",
          arguments: {
            path: `/machine/peripheral-anon/device[${k}]`,
            property: key,
          },
          id,
        });
      }
    });
    assert.ok(expected.size >= 12, `only ${expected.size} properties`);
    const r = await qemuQmp(["-M", "pc", ...withHubports(args)], gets);
    assert.equal(r.code, 0, r.stderr);
    const got = new Map(
      r.replies.filter((x) => typeof x.id === "string").map((x) => [
        x.id as string,
        "return" in x ? x.return : x.error,
      ]),
    );
    assert.deepEqual(got, expected);
  },
);

qemuTest(
  "qemu (real): the same check refuses what QEMU refuses (rx_queue_size=128)",
  async () => {
    const r = await qemuQmp([
      "-M",
      "pc",
      "-netdev",
      "hubport,id=net0,hubid=0",
      "-device",
      `virtio-net-pci,netdev=net0,mac=${MAC0},rx_queue_size=128`,
    ]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /rx_queue_size/);
  },
);
