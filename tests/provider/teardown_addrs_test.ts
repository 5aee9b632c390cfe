/**
 * CNI DEL must see the container interface as ADD left it. vmnic removes
 * the veth's addresses when it hands the veth to the guest; plugins such as
 * bridge with `ipMasq` read them on DEL to find their NAT rules, so vmnic
 * puts them back first. A spy plugin chained after bridge records what the
 * container interface holds when its DEL runs (before bridge's, as DEL runs
 * in reverse).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ipJson, rootTest } from "../support/harness.ts";
import { makeFixture } from "./_fixture.ts";

const SPY = "vmnic-test-spy";

function spyPlugin(log: string): string {
  return `#!/usr/bin/env -S ${Deno.execPath()} run --allow-read --allow-write --allow-run --allow-env
const input = JSON.parse(await new Response(Deno.stdin.readable).text());
const cmd = Deno.env.get("CNI_COMMAND");
if (cmd === "VERSION") {
  console.log(JSON.stringify({ cniVersion: "1.0.0", supportedVersions: ["0.4.0", "1.0.0"] }));
} else if (cmd === "ADD") {
  console.log(JSON.stringify(input.prevResult));
} else if (cmd === "DEL") {
  const out = new Deno.Command("nsenter", {
    args: ["--net=" + Deno.env.get("CNI_NETNS"), "ip", "-j", "addr", "show", "dev", Deno.env.get("CNI_IFNAME")],
  }).outputSync();
  Deno.writeTextFileSync(${
    JSON.stringify(log)
  }, new TextDecoder().decode(out.stdout), { append: true });
}
`;
}

for (const via of ["remove", "delete"] as const) {
  rootTest(
    `${via}: CNI DEL finds the CNI result's addresses back on the veth`,
    async () => {
      const dir = await Deno.makeTempDir({ prefix: "vmnic-spy-" });
      const log = join(dir, "del.json");
      const fx = await makeFixture("spy", {
        octet: 236,
        extraPlugins: [{ type: SPY }],
        fakePlugins: { [SPY]: spyPlugin(log) },
      });
      try {
        const [nic] = await fx.cliOk<
          { ips: { address: string; prefix: number }[] }[]
        >(
          ["add", "vm1"],
        );
        assert.equal(nic.ips.length, 1);
        // Handed to the guest: the veth carries no address while the VM runs.
        const ns = `${fx.prefix}vm1`;
        const live = await ipJson<{ addr_info: unknown[] }>(
          "-n",
          ns,
          "addr",
          "show",
          "dev",
          "eth0",
        );
        assert.deepEqual(live[0].addr_info, []);

        await fx.cliOk(
          via === "remove" ? ["remove", "vm1", "0"] : ["delete", "vm1"],
        );
        const seen = JSON.parse(await Deno.readTextFile(log));
        const v4 = seen[0].addr_info.filter((a: { family: string }) =>
          a.family === "inet"
        );
        assert.deepEqual(
          v4.map((a: { local: string; prefixlen: number }) =>
            `${a.local}/${a.prefixlen}`
          ),
          [`${nic.ips[0].address}/${nic.ips[0].prefix}`],
        );
        assert.deepEqual(await fx.leasedIps(), []);
      } finally {
        await fx.cleanup();
        await Deno.remove(dir, { recursive: true });
      }
    },
  );
}
