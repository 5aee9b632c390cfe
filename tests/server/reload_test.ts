/**
 * `vmnic serve` reads the conflists again when the conf dir changes (issue
 * #10 §2): a conflist written into it while the daemon runs is listed by
 * `networks` through the daemon within about a second (as the CLI in
 * process lists it) and can be used at once; a change to it is seen; once
 * removed it is gone, and an add on it is refused.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { rootTest, run } from "../support/harness.ts";
import { makeFixture } from "../provider/_fixture.ts";
import type { NicConfig } from "../../src/provider/types.ts";
import {
  at,
  killDaemons,
  request,
  sleep,
  socketDir,
  startDaemon,
} from "./_daemon.ts";

interface Networks {
  networks: { name: string; cniVersion: string; source: string }[];
}

rootTest(
  "serve: a conflist written into the conf dir while the daemon runs is listed and usable within a second; changed and removed, too",
  async () => {
    const fx = await makeFixture("rld", { octet: 170 });
    const dir = await socketDir();
    const rand = crypto.getRandomValues(new Uint32Array(1))[0];
    const bridge = `vbrld2${(rand % 36 ** 4).toString(36)}`;
    const net = "net-rld2";
    const subnet = `10.174.${rand % 250 + 1}.0/24`;
    const file = join(fx.cniConfDir, `20-${net}.conflist`);
    const conflist = (cniVersion: string) =>
      JSON.stringify({
        cniVersion,
        name: net,
        plugins: [{
          type: "bridge",
          bridge,
          isGateway: true,
          ipMasq: false,
          ipam: {
            type: "host-local",
            ranges: [[{ subnet }]],
            routes: [{ dst: "0.0.0.0/0" }],
            dataDir: fx.ipamDir,
          },
        }],
      });
    try {
      const socket = at(dir, "vmnic.sock");
      await startDaemon(fx, { socket });
      const listed = async () =>
        ((await request(socket, "GET", "/v1/networks")).json as Networks)
          .networks;
      /** Waits until `ok` holds of the networks served; the time it took. */
      const until = async (ok: (n: Networks["networks"]) => boolean) => {
        const start = performance.now();
        while (performance.now() - start < 5_000) {
          if (ok(await listed())) return performance.now() - start;
          await sleep(25);
        }
        throw new Error(`not seen in 5 s: ${JSON.stringify(await listed())}`);
      };
      assert.deepEqual((await listed()).map((n) => n.name), [fx.network]);

      await Deno.writeTextFile(file, conflist("1.0.0"));
      const seen = await until((n) => n.some((x) => x.name === net));
      assert.ok(seen < 1_500, `listed after ${Math.round(seen)} ms`);
      const through = await fx.cli([`--socket=${socket}`, "networks"]);
      const here = await fx.cli(["--no-daemon", "networks"]);
      assert.equal(through.code, 0, through.stderr);
      assert.equal(through.stdout, here.stdout);
      assert.deepEqual(
        (JSON.parse(through.stdout) as Networks).networks.map((n) => n.name),
        [fx.network, net],
      );

      // Usable at once.
      const add = await request(socket, "POST", "/v1/vms/vmN/nics", {
        json: { network: net },
      });
      assert.equal(add.status, 200, add.text);
      const [nic] = add.json as NicConfig[];
      assert.equal(nic.network, net);
      assert.ok(
        nic.ips[0].address.startsWith(subnet.split(".").slice(0, 3).join(".")),
        nic.ips[0].address,
      );
      const v = await request(socket, "POST", "/v1/vms/vmN/verify");
      assert.equal((v.json as { ok: boolean }).ok, true, v.text);
      assert.equal(
        (await request(socket, "DELETE", "/v1/vms/vmN")).status,
        200,
      );

      // Changed: seen.
      await Deno.writeTextFile(file, conflist("0.4.0"));
      await until((n) => n.find((x) => x.name === net)?.cniVersion === "0.4.0");

      // Removed: gone, and refused.
      await Deno.remove(file);
      const gone = await until((n) => !n.some((x) => x.name === net));
      assert.ok(gone < 1_500, `still listed after ${Math.round(gone)} ms`);
      const refused = await request(socket, "POST", "/v1/vms/vmM/nics", {
        json: { network: net },
      });
      assert.equal(refused.status, 400, refused.text);
      assert.match(
        (refused.json as { error: { message: string } }).error.message,
        new RegExp(`unknown network "${net}"`),
      );
    } finally {
      await killDaemons();
      await fx.cleanup();
      await run("ip", ["link", "del", bridge]);
      await Deno.remove(dir, { recursive: true });
    }
  },
);
