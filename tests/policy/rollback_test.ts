/**
 * An add whose policy the kernel refuses leaves nothing behind (the fake
 * kernel models no root qdiscs, so a rate limit fails as a kernel without
 * tbf would); a `policy` change the kernel refuses keeps the old one, in
 * the kernel and in the record.
 */
import assert from "node:assert/strict";
import { fakeWorld } from "../support/fake_provider.ts";

Deno.test("policy: an add whose rate limit the kernel refuses rolls back, leaving nothing", async () => {
  const w = await fakeWorld();
  try {
    const p = await w.open();
    await assert.rejects(
      () => p.add("vm1", {}, { policy: { rate: "10mbit" } }),
      /set rate limit|qdisc|tbf/i,
    );
    assert.deepEqual(await p.list(), []);
    p.close();
    assert.deepEqual(await w.leaks(), []);
  } finally {
    await w.dispose();
  }
});

Deno.test("policy: a change the kernel refuses keeps the old policy in the kernel and the record", async () => {
  const w = await fakeWorld();
  try {
    const p = await w.open();
    const [nic] = await p.add("vm1", {}, {
      policy: { egress: [{ action: "deny", cidr: "10.9.0.0/16" }] },
    });
    const filters = w.kernel.filters(nic.netnsPath, "tap0").length;
    await assert.rejects(
      () => p.policy("vm1", 0, { set: { rate: "5mbit", isolate: true } }),
      /set rate limit|qdisc|tbf/i,
    );
    const [after] = await p.list({ vmId: "vm1" });
    assert.deepEqual(after.policy, nic.policy, "the record kept the old one");
    assert.ok((await p.verify("vm1")).ok, "the kernel has the old one");
    assert.equal(w.kernel.filters(nic.netnsPath, "tap0").length, filters);
    const events = await p.events({ op: "policy" });
    assert.equal(events.at(-1)?.outcome, "failed");
    p.close();
  } finally {
    await w.dispose();
  }
});
