import assert from "node:assert/strict";
import { withNetns } from "../../src/kernel/netns.ts";
import { createTap } from "../../src/kernel/tuntap.ts";
import { InvalidArgumentError, KernelError } from "../../src/sys/errors.ts";
import {
  ipJson,
  rootTest,
  run,
  uniquePrefix,
  withScratchNetns,
} from "../support/harness.ts";

interface TunInfo {
  type: string;
  pi: boolean;
  vnet_hdr: boolean;
  multi_queue: boolean;
  persist: boolean;
  user?: number;
  group?: number;
}

interface Link {
  ifname: string;
  linkinfo?: { info_kind: string; info_data: TunInfo };
}

/** `ip -n NS -d link show NAME` (the oracle), or null when absent. */
async function tapInfo(ns: string, name: string): Promise<Link | null> {
  const r = await run("ip", ["-n", ns, "-j", "-d", "link", "show", name]);
  if (r.code !== 0) return null;
  return (JSON.parse(r.stdout) as Link[])[0] ?? null;
}

async function linkNames(ns: string): Promise<string[]> {
  const links = await ipJson<Link>("-n", ns, "link", "show");
  return links.map((l) => l.ifname).sort();
}

rootTest(
  "createTap makes persistent TAPs as asked, in the netns entered",
  async () => {
    const prefix = uniquePrefix("tap");
    const ns = prefix + "t";
    await withScratchNetns(prefix, ["t"], async ([path]) => {
      withNetns(path, () => {
        createTap({ name: "tap0" });
        createTap({ name: "tapmq", multiQueue: true });
        createTap({ name: "tapraw", vnetHdr: false });
        createTap({ name: "tapown", owner: 1234, group: 5678 });
      });

      const tap0 = await tapInfo(ns, "tap0");
      assert.equal(tap0?.linkinfo?.info_kind, "tun");
      assert.deepEqual(tap0?.linkinfo?.info_data, {
        type: "tap",
        pi: false,
        vnet_hdr: true,
        multi_queue: false,
        persist: true,
      });

      const mq = (await tapInfo(ns, "tapmq"))?.linkinfo?.info_data;
      assert.equal(mq?.multi_queue, true);
      assert.equal(mq?.vnet_hdr, true);
      assert.equal(mq?.persist, true);

      const raw = (await tapInfo(ns, "tapraw"))?.linkinfo?.info_data;
      assert.equal(raw?.vnet_hdr, false);
      assert.equal(raw?.persist, true);

      const own = (await tapInfo(ns, "tapown"))?.linkinfo?.info_data;
      assert.equal(own?.user, 1234);
      assert.equal(own?.group, 5678);
      assert.equal(own?.persist, true);

      // Made in the netns entered, not in the one the test runs in.
      assert.equal(await tapInfo(ns, "tap0") !== null, true);
      const here = await run("ip", ["-j", "link", "show", "tap0"]);
      assert.notEqual(here.code, 0, "no tap0 outside the scratch netns");

      await run("ip", ["-n", ns, "link", "del", "tap0"]);
      assert.equal(await tapInfo(ns, "tap0"), null);
    });
  },
);

rootTest(
  "createTap refuses a name already in use with EBUSY, keeping the device",
  async () => {
    const prefix = uniquePrefix("tap");
    const ns = prefix + "t";
    await withScratchNetns(prefix, ["t"], async ([path]) => {
      const busy = (err: unknown) => {
        assert.ok(err instanceof KernelError, `${err}`);
        assert.equal(err.code, "EBUSY");
        assert.equal(err.op, "create tap");
        return true;
      };
      withNetns(path, () => createTap({ name: "tap0", multiQueue: true }));
      // Same flags or not, a TAP or another kind of device: never reused.
      withNetns(path, () => {
        assert.throws(
          () => createTap({ name: "tap0", multiQueue: true }),
          busy,
        );
        assert.throws(() => createTap({ name: "tap0" }), busy);
        assert.throws(() => createTap({ name: "lo" }), busy);
      });
      const tap0 = (await tapInfo(ns, "tap0"))?.linkinfo?.info_data;
      assert.equal(tap0?.multi_queue, true);
      assert.equal(tap0?.persist, true);
      assert.equal((await tapInfo(ns, "lo"))?.linkinfo, undefined);
    });
  },
);

rootTest(
  "createTap refuses bad names and ids before touching the kernel",
  async () => {
    const prefix = uniquePrefix("tap");
    const ns = prefix + "t";
    await withScratchNetns(prefix, ["t"], async ([path]) => {
      const before = await linkNames(ns);
      const invalid = (err: unknown) => err instanceof InvalidArgumentError;
      withNetns(path, () => {
        for (const name of ["", "x".repeat(16), "a/b", "tap 0", "tap:0", "."]) {
          assert.throws(
            () => createTap({ name }),
            invalid,
            JSON.stringify(name),
          );
        }
        assert.throws(() => createTap({ name: "tap%d" }), invalid);
        assert.throws(() => createTap({ name: "tapx", owner: -1 }), invalid);
        assert.throws(() => createTap({ name: "tapx", group: 1.5 }), invalid);
      });
      assert.deepEqual(await linkNames(ns), before);
    });
  },
);

rootTest(
  "createTap leaves nothing behind when a step after TUNSETIFF fails",
  async () => {
    const prefix = uniquePrefix("tap");
    const ns = prefix + "t";
    await withScratchNetns(prefix, ["t"], async ([path]) => {
      // (uid_t)-1 is no valid owner: the kernel refuses TUNSETOWNER.
      assert.throws(
        () =>
          withNetns(
            path,
            () => createTap({ name: "tapbad", owner: 2 ** 32 - 1 }),
          ),
        (err: unknown) => {
          assert.ok(err instanceof KernelError, `${err}`);
          assert.equal(err.code, "EINVAL");
          assert.match(err.message, /TUNSETOWNER/);
          return true;
        },
      );
      assert.equal(await tapInfo(ns, "tapbad"), null, "not persisted");
    });
  },
);
