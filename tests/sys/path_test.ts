/**
 * src/sys/path.ts behaves as node:path's POSIX functions for every input
 * vmnic gives it (node:path is the oracle here, in the test only).
 */
import assert from "node:assert/strict";
import * as node from "node:path";
import {
  basename,
  dirname,
  join,
  normalize,
  resolve,
} from "../../src/sys/path.ts";

const PATHS = [
  "/",
  "//",
  "/a",
  "/a/",
  "/a/b/c",
  "/a/b/c/",
  "/a//b///c",
  "/a/./b/../c",
  "/../a",
  "a",
  "a/b",
  "a/",
  "./a",
  "../a/b",
  "a/../..",
  ".",
  "..",
  "/var/run/netns/vmnic-vm1",
  "/tmp/vmnic-x/root/records/vm1.jsonl",
];

Deno.test("dirname, basename and normalize agree with node:path (POSIX)", () => {
  for (const p of PATHS) {
    assert.equal(dirname(p), node.posix.dirname(p), `dirname(${p})`);
    assert.equal(basename(p), node.posix.basename(p), `basename(${p})`);
    assert.equal(
      normalize(p),
      node.posix.normalize(p).replace(/(.)\/$/, "$1"),
      `normalize(${p})`,
    );
  }
});

Deno.test("join and resolve agree with node:path (POSIX)", () => {
  const cases: string[][] = [
    ["/var/lib/vmnic", "vmnic.db"],
    ["/run/vmnic", "locks", "vm1.lock"],
    ["a", "", "b"],
    ["/a/", "/b"],
    ["a", "..", "..", "c"],
    ["/a", "../..", "b"],
  ];
  for (const c of cases) {
    assert.equal(
      join(...c),
      node.posix.join(...c).replace(/(.)\/$/, "$1"),
      `join(${c})`,
    );
    assert.equal(resolve(...c), node.posix.resolve(...c), `resolve(${c})`);
  }
  assert.equal(join(), node.posix.join());
  assert.equal(resolve(), Deno.cwd());
});
