import assert from "node:assert/strict";
import { join } from "node:path";
import { type HookInput, HookRunner } from "../../src/hooks/mod.ts";
import auditLog from "../../hooks/audit_log.ts";
import denyPolicy from "../../hooks/deny_policy.ts";

const AFTER: HookInput = {
  operation: "add",
  vmId: "vm1",
  index: 0,
  ifName: "eth0",
  tap: "tap0",
  mac: "0a:58:0a:58:00:05",
  network: "vmnic",
  ips: [{ address: "10.88.0.5", prefix: 16, gateway: "10.88.0.1", version: 4 }],
};

/** Runs `fn` with env vars set, restoring them after. */
async function withEnv(vars: Record<string, string>, fn: () => Promise<void>) {
  const old = Object.fromEntries(
    Object.keys(vars).map((k) => [k, Deno.env.get(k)]),
  );
  for (const [k, v] of Object.entries(vars)) Deno.env.set(k, v);
  try {
    await fn();
  } finally {
    for (const [k, v] of Object.entries(old)) {
      if (v === undefined) Deno.env.delete(k);
      else Deno.env.set(k, v);
    }
  }
}

async function withScratch(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "vmnict-hooks-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("audit_log writes one JSON line per event with the documented fields", async () => {
  await withScratch(async (dir) => {
    const log = join(dir, "audit.jsonl");
    const runner = new HookRunner({
      hooksDir: null,
      tsHooks: { "audit_log.ts": auditLog },
    });
    await withEnv({ VMNIC_AUDIT_LOG: log }, async () => {
      const before = Date.now();
      await runner.run("beforeAdd", {
        operation: "add",
        vmId: "vm1",
        index: 0,
      });
      await runner.run("afterAdd", AFTER);
      await runner.run("beforeRemove", { ...AFTER, operation: "delete" });
      const lines = (await Deno.readTextFile(log)).split("\n");
      assert.equal(lines.pop(), "", "the file ends with a newline");
      const records = lines.map((l) => JSON.parse(l));
      assert.equal(records.length, 3);
      for (const r of records) {
        assert.deepEqual(Object.keys(r).sort(), [
          "event",
          "index",
          "ips",
          "mac",
          "operation",
          "tap",
          "timestamp",
          "vmId",
        ]);
        const t = Date.parse(r.timestamp);
        assert.ok(t >= before - 1000 && t <= Date.now() + 1000, r.timestamp);
      }
      assert.deepEqual(records[0], {
        timestamp: records[0].timestamp,
        event: "beforeAdd",
        operation: "add",
        vmId: "vm1",
        index: 0,
        tap: null,
        mac: null,
        ips: [],
      });
      assert.deepEqual(
        [records[1].event, records[1].tap, records[1].mac, records[1].ips],
        ["afterAdd", "tap0", "0a:58:0a:58:00:05", AFTER.ips],
      );
      assert.deepEqual(
        [records[2].event, records[2].operation],
        ["beforeRemove", "delete"],
      );
      assert.equal((await Deno.stat(log)).mode! & 0o777, 0o600);
    });
  });
});

Deno.test("audit_log does nothing when VMNIC_AUDIT_LOG is unset", async () => {
  await withScratch(async (dir) => {
    const saved = Deno.env.get("VMNIC_AUDIT_LOG");
    Deno.env.delete("VMNIC_AUDIT_LOG");
    try {
      const runner = new HookRunner({
        hooksDir: null,
        tsHooks: { "audit_log.ts": auditLog },
      });
      await runner.run("afterAdd", AFTER);
      assert.deepEqual([...Deno.readDirSync(dir)], []);
    } finally {
      if (saved !== undefined) Deno.env.set("VMNIC_AUDIT_LOG", saved);
    }
  });
});

Deno.test("deny_policy reads VMNIC_DENY_POLICY_FILE, not the TAP policy file's VMNIC_POLICY_FILE", async () => {
  await withScratch(async (dir) => {
    // A TAP policy file (docs/policy.md): no "deny" in it. Were deny_policy
    // to read it, it would fail closed and veto every add.
    const tapPolicy = join(dir, "policy.json");
    await Deno.writeTextFile(
      tapPolicy,
      JSON.stringify({ networks: { "*": { isolate: true } } }),
    );
    const runner = new HookRunner({
      hooksDir: null,
      tsHooks: { "deny_policy.ts": denyPolicy },
    });
    assert.equal(Deno.env.get("VMNIC_DENY_POLICY_FILE"), undefined);
    await withEnv(
      { VMNIC_POLICY_FILE: tapPolicy },
      async () => {
        assert.equal(runner.snapshot().has("beforeAdd"), false, "idle");
        await runner.run("beforeAdd", {
          operation: "add",
          vmId: "test-1",
          index: 0,
          network: "prod",
        });
      },
    );
  });
});

Deno.test("deny_policy vetoes a denied VM on a network and allows the others", async () => {
  await withScratch(async (dir) => {
    const policy = join(dir, "policy.json");
    await Deno.writeTextFile(
      policy,
      JSON.stringify({
        deny: { prod: ["test-*", "scratch"], "*": ["quarantined-?"] },
      }),
    );
    const runner = new HookRunner({
      hooksDir: null,
      tsHooks: { "deny_policy.ts": denyPolicy },
    });
    const add = (vmId: string, network?: string) =>
      runner.run("beforeAdd", { operation: "add", vmId, index: 0, network });
    await withEnv({ VMNIC_DENY_POLICY_FILE: policy }, async () => {
      await assert.rejects(
        add("test-42", "prod"),
        /deny_policy\.ts.*VM test-42 may not join network "prod".*"test-\*"/,
      );
      await assert.rejects(add("scratch", "prod"), /scratch/);
      await assert.rejects(add("quarantined-7", "dev"), /quarantined-\?/);
      // Allowed: other VMs, other networks, near-misses of the globs.
      await add("prod-db", "prod");
      await add("test-42", "dev");
      await add("scratch2", "prod");
      await add("quarantined-77", "dev");
      // Only beforeAdd is policed.
      await runner.run("afterAdd", {
        operation: "add",
        vmId: "test-1",
        index: 0,
        network: "prod",
      });
    });
  });
});

Deno.test("deny_policy fails closed on a malformed or missing policy file, and is a no-op when unset", async () => {
  await withScratch(async (dir) => {
    const runner = new HookRunner({
      hooksDir: null,
      tsHooks: { "deny_policy.ts": denyPolicy },
    });
    const add = () =>
      runner.run("beforeAdd", {
        operation: "add",
        vmId: "vm1",
        index: 0,
        network: "n",
      });
    const broken = join(dir, "broken.json");
    for (
      const [text, why] of [
        ["{ not json", /not valid JSON/],
        ['{"deny": ["vm1"]}', /must look like/],
        ['{"deny": {"n": "vm1"}}', /must look like/],
        ["[]", /must look like/],
      ] as const
    ) {
      await Deno.writeTextFile(broken, text);
      await withEnv({ VMNIC_DENY_POLICY_FILE: broken }, async () => {
        await assert.rejects(add(), why);
      });
    }
    await withEnv(
      { VMNIC_DENY_POLICY_FILE: join(dir, "missing.json") },
      async () => {
        await assert.rejects(add(), /deny_policy\.ts/);
      },
    );
    const saved = Deno.env.get("VMNIC_DENY_POLICY_FILE");
    Deno.env.delete("VMNIC_DENY_POLICY_FILE");
    try {
      await add();
    } finally {
      if (saved !== undefined) Deno.env.set("VMNIC_DENY_POLICY_FILE", saved);
    }
  });
});
