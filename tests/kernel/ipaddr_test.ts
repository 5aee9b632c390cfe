import assert from "node:assert/strict";
import {
  formatIP,
  formatIPv4,
  formatIPv6,
  parseCidr,
  parseIP,
  parseIPv4,
  parseIPv6,
} from "../../src/kernel/ipaddr.ts";
import { InvalidArgumentError } from "../../src/sys/errors.ts";

Deno.test("ipv4 parse/format round trips", () => {
  for (const s of ["0.0.0.0", "10.88.0.5", "192.0.2.1", "255.255.255.255"]) {
    assert.equal(formatIPv4(parseIPv4(s)), s);
  }
  assert.deepEqual([...parseIPv4("10.1.2.3")], [10, 1, 2, 3]);
});

Deno.test("ipv4 invalid inputs are rejected", () => {
  for (
    const s of [
      "",
      "1.2.3",
      "1.2.3.4.5",
      "256.0.0.1",
      "01.2.3.4",
      "1.2.3.-4",
      "1.2.3.4 ",
      "a.b.c.d",
      "1..2.3",
    ]
  ) {
    assert.throws(() => parseIPv4(s), InvalidArgumentError, s);
  }
});

Deno.test("ipv6 formatting follows RFC 5952 (as iproute2 prints)", () => {
  const cases: [string, string][] = [
    ["::", "::"],
    ["::1", "::1"],
    ["fe80::1", "fe80::1"],
    ["FE80:0:0:0:0:0:0:1", "fe80::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"], // first of equal runs
    ["2001:db8:0:1:0:0:0:1", "2001:db8:0:1::1"], // longest run wins
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"], // one zero: no '::'
    ["2001:0db8::0001", "2001:db8::1"], // leading zeros dropped
    ["1::", "1::"],
    ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"],
    ["fd00:abcd::", "fd00:abcd::"],
    ["::ffff:192.0.2.1", "::ffff:192.0.2.1"], // v4-mapped keeps the quad
    ["::ffff:c000:201", "::ffff:192.0.2.1"],
    ["64:ff9b::192.0.2.1", "64:ff9b::c000:201"], // only mapped keeps dots
  ];
  for (const [input, expected] of cases) {
    assert.equal(formatIPv6(parseIPv6(input)), expected, input);
  }
});

Deno.test("ipv6 parse gives the right bytes", () => {
  const b = parseIPv6("fe80::1");
  assert.equal(b.length, 16);
  assert.deepEqual([...b.subarray(0, 2)], [0xfe, 0x80]);
  assert.equal(b[15], 1);
  assert.ok(b.subarray(2, 15).every((x) => x === 0));
  assert.deepEqual(
    [...parseIPv6("::ffff:10.0.0.1").subarray(10)],
    [0xff, 0xff, 10, 0, 0, 1],
  );
});

Deno.test("ipv6 invalid inputs are rejected", () => {
  for (
    const s of [
      "",
      ":",
      ":::",
      "1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7:8:9",
      "1::2::3",
      "1:2:3:4:5:6:7::8", // '::' standing for no group
      "12345::",
      "g::1",
      ":1::",
      "1::2:",
      "fe80::1%eth0",
      "::1.2.3",
      "::256.1.1.1",
      "1:2:3:4:5:6:7:1.2.3.4", // quad makes 9 groups
    ]
  ) {
    assert.throws(() => parseIPv6(s), InvalidArgumentError, s);
  }
});

Deno.test("parseIP/formatIP choose the family", () => {
  assert.equal(parseIP("10.0.0.1").family, 4);
  assert.equal(parseIP("fd00::1").family, 6);
  assert.equal(formatIP(parseIP("10.0.0.1").bytes), "10.0.0.1");
  assert.equal(formatIP(parseIP("fd00::1").bytes), "fd00::1");
  assert.throws(() => formatIP(new Uint8Array(5)), InvalidArgumentError);
});

Deno.test("parseCidr reads prefix, defaults to a host prefix", () => {
  assert.deepEqual(
    { ...parseCidr("10.88.0.5/16"), bytes: undefined },
    { family: 4, prefix: 16, bytes: undefined },
  );
  assert.equal(parseCidr("10.0.0.1").prefix, 32);
  assert.equal(parseCidr("fd00::1").prefix, 128);
  assert.equal(parseCidr("fd00::1/64").prefix, 64);
  assert.equal(parseCidr("0.0.0.0/0").prefix, 0);
  for (
    const s of ["10.0.0.1/33", "fd00::1/129", "10.0.0.1/", "10.0.0.1/08", "/8"]
  ) {
    assert.throws(() => parseCidr(s), InvalidArgumentError, s);
  }
});
