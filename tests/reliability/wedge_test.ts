/**
 * No failure wedges a VM (issue #9, item 1). A network whose IPAM section
 * has a typo (`"rangez"`) makes CNI ADD fail, and its DEL fail too, so the
 * rollback cannot finish: the NIC must then show as `failed` with the error
 * in `list`, `inspect` and `verify`, and `add`, `recover`, `delete` and
 * `gc` must each say what failed and how to get out. Fixing the conflist
 * must be enough for `delete` (the current conflist's DEL is used); with
 * the typo kept, `delete --force` (and `remove --force` for a hot-added
 * NIC) must finish the teardown, reporting what the plugins could not
 * release. And what CNI would refuse must be refused before anything is
 * made: a netns prefix that makes no valid container id (`-`), a nested
 * `ipam.type` that is a path.
 */
import { join } from "node:path";
import assert from "node:assert/strict";
import { rootTest } from "../support/harness.ts";
import { claimPath } from "../../src/provider/ownership.ts";
import {
  type CliRun,
  describe,
  jsonError,
  makeEnv,
  nicIdentity,
  type NicJson,
  prefixedNetns,
  randomBelow,
  runCli,
  type TestEnv,
} from "./_env.ts";
import { checkGone, checkWhole, exitIs, nicsOf, Tally } from "./_checks.ts";

/** A conflist whose host-local section says `rangez` for `ranges`. */
function typoConflist(env: TestEnv, name: string, subnet: string, typo = true) {
  return JSON.stringify({
    cniVersion: "1.0.0",
    name,
    plugins: [{
      type: "bridge",
      bridge: env.bridge,
      isGateway: true,
      ipam: {
        type: "host-local",
        [typo ? "rangez" : "ranges"]: [[{ subnet }]],
        dataDir: env.ipamDir,
      },
    }],
  });
}

/** The error text of a failed run: its JSON error, or its per-VM errors. */
function errorText(r: CliRun): string {
  const e = jsonError(r);
  if (e) return `${e.type}: ${e.message}`;
  try {
    const out = JSON.parse(r.stdout) as {
      errors?: { error: string }[];
      problems?: { error: string }[];
    };
    return [...(out.errors ?? []), ...(out.problems ?? [])].map((x) => x.error)
      .join(" | ");
  } catch {
    return r.stderr + r.stdout;
  }
}

/** The error must say what failed (the plugin's message) and the way out. */
function saysWayOut(r: CliRun, what: string, code: number): string[] {
  const text = errorText(r);
  return [
    exitIs(r, code, what),
    /no IP ranges specified/.test(text)
      ? null
      : `${what} does not say what failed: ${text}`,
    /--force/.test(text) && /\b(delete|remove)\b/.test(text)
      ? null
      : `${what} does not say how to get out: ${text}`,
  ].filter((p): p is string => p !== null);
}

function failedNic(nics: NicJson[] | string, index: number): string | null {
  if (typeof nics === "string") return nics;
  const n = nics.find((x) => x.index === index);
  if (!n) return `NIC ${index} not listed`;
  if (n.state !== "failed") return `NIC ${index} is ${n.state}, not failed`;
  if (!/no IP ranges specified/.test(n.error ?? "")) {
    return `NIC ${index} has no error saying why: ${JSON.stringify(n)}`;
  }
  if (n.mac !== undefined || n.mtu !== undefined) {
    return `a NIC that was never plumbed shows mac/mtu: ${JSON.stringify(n)}`;
  }
  return null;
}

rootTest("wedge: a failing DEL never wedges a VM", async () => {
  const env = await makeEnv("rwe", {
    subnet: `10.234.${1 + randomBelow(120)}.0/24`,
  });
  const t = new Tally();
  const typoFile = join(env.cniConfDir, "20-typo.conflist");
  const typoSubnet = `10.234.${130 + randomBelow(120)}.0/24`;
  const spyLog = join(env.dir, "spy.log");
  try {
    // A VM that lives through it all: a failing VM touches no other. (Its
    // ADD also gives the bridge its gateway address and fixed MAC first: a
    // bridge the typo's ADD made and left without ports has MAC 0, which
    // the bridge plugin then fails to set on itself, EINVAL.)
    const anchor = await env.cli(["add", "anchor", "--nics", "2"]);
    t.case("anchor added", [exitIs(anchor, 0, "add anchor")]);
    const anchorId = anchor.code === 0
      ? nicIdentity(JSON.parse(anchor.stdout) as NicJson[])
      : "";
    await Deno.writeTextFile(
      typoFile,
      typoConflist(env, "typo", typoSubnet),
    );

    // ---- a fresh VM on the typo network, then the way out with --force
    const w2 = await env.cli(["add", "w2", "--network", "typo"]);
    t.case("add with an IPAM typo fails, saying why and how out", [
      exitIs(w2, 1, "add"),
      /no IP ranges specified/.test(errorText(w2))
        ? null
        : `no cause: ${errorText(w2)}`,
      /delete --force/.test(errorText(w2))
        ? null
        : `no way out: ${errorText(w2)}`,
    ]);
    const listed = await nicsOf(env, "w2");
    t.case("the NIC shows failed, with the error, in list", [
      failedNic(listed, 0),
    ]);
    if (typeof listed !== "string" && listed[0]) {
      const i = await env.cli(["inspect", listed[0].id]);
      t.case("inspect shows failed", [
        exitIs(i, 0, "inspect"),
        i.code === 0 ? failedNic([JSON.parse(i.stdout)], 0) : null,
      ]);
    }
    const v = await env.cli(["verify", "w2"]);
    t.case("verify reports the failed NIC", [
      exitIs(v, 1, "verify"),
      /failed/.test(v.stdout) ? null : `verify: ${v.stdout}`,
    ]);
    const forced = await env.cli(["delete", "--force", "w2"]);
    const fw = forced.code === 0
      ? (JSON.parse(forced.stdout) as { warnings: { warning: string }[] })
        .warnings.map((w) => w.warning).join(" | ")
      : "";
    t.case("delete --force finishes with the typo kept", [
      exitIs(forced, 0, "delete --force"),
      /may still hold/.test(fw) && /vmnic-[0-9a-f]+-w2/.test(fw)
        ? null
        : `--force does not report what the plugins may hold: ${fw}`,
      ...await checkGone(env, "w2"),
    ]);

    // ---- a fresh VM: every operation says how to get out; a fix suffices
    const w1 = await env.cli(["add", "w1", "--network", "typo"]);
    t.case("add w1 fails", [exitIs(w1, 1, "add")]);
    const retry = await env.cli(["add", "w1", "--network", "typo"]);
    const retryText = errorText(retry);
    t.case("a retried add is a conflict that says how to get out", [
      exitIs(retry, 2, "retried add"),
      jsonError(retry)?.type === "ConflictError"
        ? null
        : `not a ConflictError: ${retryText}`,
      /--force/.test(retryText) && /\b(delete|remove)\b/.test(retryText)
        ? null
        : `retried add does not say how to get out: ${retryText}`,
    ]);
    t.case(
      "recover says how to get out",
      saysWayOut(await env.cli(["recover", "w1"]), "recover", 1),
    );
    t.case(
      "delete says how to get out",
      saysWayOut(await env.cli(["delete", "w1"]), "delete", 1),
    );
    t.case(
      "gc says how to get out",
      saysWayOut(await env.cli(["gc", "--active", "anchor"]), "gc", 1),
    );
    t.case(
      "add after the failed delete says how to get out",
      saysWayOut(await env.cli(["add", "w1", "--network", "typo"]), "add", 1),
    );
    t.case(
      "recover after the failed delete says how to get out",
      saysWayOut(await env.cli(["recover", "w1"]), "recover", 1),
    );
    t.case("still failed, with the error", [
      failedNic(await nicsOf(env, "w1"), 0),
    ]);
    // The operator fixes the typo: DEL with the current conflist works.
    await Deno.writeTextFile(
      typoFile,
      typoConflist(env, "typo", typoSubnet, false),
    );
    const fixed = await env.cli(["delete", "w1"]);
    const fixedWarn = fixed.code === 0 ? fixed.stdout : "";
    t.case("after the fix, delete works with the current conflist", [
      exitIs(fixed, 0, "delete after the fix"),
      /current conflist/.test(fixedWarn)
        ? null
        : `delete does not say it used the current conflist: ${fixedWarn}`,
      ...await checkGone(env, "w1"),
    ]);

    // ---- a hot-added NIC on the typo network: NIC 0 is never touched
    await Deno.writeTextFile(typoFile, typoConflist(env, "typo", typoSubnet));
    const base = await env.cli(["add", "w3"]);
    t.case("w3 added", [exitIs(base, 0, "add w3")]);
    const nic0 = base.code === 0
      ? nicIdentity(JSON.parse(base.stdout) as NicJson[])
      : "";
    const hot = await env.cli([
      "add",
      "w3",
      "--index",
      "1",
      "--network",
      "typo",
    ]);
    const hotList = await nicsOf(env, "w3");
    t.case("a hot-add on the typo network fails; NIC 1 failed", [
      exitIs(hot, 1, "hot-add"),
      failedNic(hotList, 1),
      typeof hotList === "string" ||
        nicIdentity(hotList.filter((n) => n.index === 0)) === nic0
        ? null
        : "NIC 0 changed",
    ]);
    t.case(
      "remove says how to get out",
      saysWayOut(await env.cli(["remove", "w3", "1"]), "remove", 1),
    );
    const rf = await env.cli(["remove", "--force", "w3", "1"]);
    t.case("remove --force drops NIC 1 and reports it; NIC 0 whole", [
      exitIs(rf, 0, "remove --force"),
      /may still hold/.test(rf.stdout) ? null : `no warning: ${rf.stdout}`,
      ...(await checkWhole(env, "w3", { indices: [0], identity: nic0 }))
        .problems,
    ]);
    const d3 = await env.cli(["delete", "w3"]);
    t.case("w3 deleted", [
      exitIs(d3, 0, "delete w3"),
      ...await checkGone(env, "w3"),
    ]);

    // ---- a netns prefix that makes no CNI container id
    for (const form of [["--netns-prefix=-"], ["--netns-prefix", "-"]]) {
      const root = join(env.dir, `dash-root-${form.length}`);
      const r = await runCli([
        `--root-dir=${root}`,
        `--run-dir=${join(env.dir, "dash-run")}`,
        `--cni-conf-dir=${env.cniConfDir}`,
        `--hooks-dir=${env.hooksDir}`,
        "--json",
        ...form,
        "add",
        "w5",
      ]);
      const made: string[] = [];
      for (
        const p of [
          root,
          join(env.dir, "dash-run"),
          claimPath("/var/run/netns", "-"),
        ]
      ) {
        try {
          await Deno.lstat(p);
          made.push(p);
        } catch { /* not made: right */ }
      }
      const ns = (await Array.fromAsync(Deno.readDir("/var/run/netns")))
        .filter((e) => e.name === "-w5");
      t.case(`${form.join(" ")} refused with nothing created`, [
        exitIs(r, 2, "add"),
        /prefix/.test(errorText(r)) ? null : `unclear: ${errorText(r)}`,
        made.length ? `made ${made.join(", ")}` : null,
        ns.length ? "netns -w5 made" : null,
      ]);
    }

    // ---- a nested ipam.type that is a path: refused before any exec
    await Deno.mkdir(join(env.dir, "spy"));
    await Deno.writeTextFile(
      join(env.dir, "spy", "ipam-spy"),
      `#!/bin/sh\necho "$CNI_COMMAND" >> ${spyLog}\ncat >/dev/null\nexit 1\n`,
      { mode: 0o755 },
    );
    for (
      const [name, type] of [["shipam", "../../bin/sh"], [
        "spyipam",
        "../spy/ipam-spy",
      ]]
    ) {
      await Deno.writeTextFile(
        join(env.cniConfDir, `30-${name}.conflist`),
        JSON.stringify({
          cniVersion: "1.0.0",
          name,
          plugins: [{
            type: "bridge",
            bridge: env.bridge,
            ipam: { type, subnet: typoSubnet, dataDir: env.ipamDir },
          }],
        }),
      );
      const before = await prefixedNetns(env);
      const r = await env.cli(["add", "w4", "--network", name]);
      const text = errorText(r);
      const nets = await env.cli(["networks"]);
      t.case(`ipam.type ${JSON.stringify(type)} refused`, [
        r.code === 1 || r.code === 2 ? null : `add: ${describe(r)}`,
        text.includes(`30-${name}.conflist`) && /ipam\.type/.test(text)
          ? null
          : `the error does not name the file and ipam.type: ${text}`,
        JSON.stringify(await prefixedNetns(env)) === JSON.stringify(before)
          ? null
          : "a netns was made",
        ...await checkGone(env, "w4"),
        nets.stdout.includes(`30-${name}.conflist`)
          ? null
          : `networks does not report the file: ${nets.stdout}`,
      ]);
    }
    let spied = "";
    try {
      spied = await Deno.readTextFile(spyLog);
    } catch { /* never run: right */ }
    t.case("the path in ipam.type was never executed", [
      spied ? `it ran: ${spied}` : null,
    ]);
    t.case(
      "the anchor VM is untouched",
      (await checkWhole(env, "anchor", { indices: [0, 1], identity: anchorId }))
        .problems,
    );
    const da = await env.cli(["delete", "anchor"]);
    t.case("anchor deleted", [exitIs(da, 0, "delete anchor")]);
    t.leaked("wedge", await env.leaks());
  } finally {
    t.print("wedge");
    t.leaked("cleanup", await env.cleanup());
  }
  assert.deepEqual(t.failures, []);
  assert.deepEqual(t.leaks, []);
});
