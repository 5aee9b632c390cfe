import { assertEquals, deepStrictEqual, throws } from "./_assert.ts";
import {
  align4,
  Attrs,
  decodeMessages,
  encodeAttrs,
  encodeMessage,
  formatMac,
  NetlinkDecodeError,
  nla,
  parseMac,
} from "../../src/netlink/codec.ts";
import { IfLink, Netlink, Rtnl, Veth } from "../../src/netlink/constants.ts";
import {
  decodeIfInfoMsg,
  decodeTcMsg,
  encodeIfInfoMsg,
  encodeTcMsg,
  htons,
} from "../../src/netlink/route.ts";

const hex = (b: Uint8Array) =>
  Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

Deno.test("align4 rounds up to netlink's 4-byte alignment", () => {
  assertEquals([0, 1, 3, 4, 5, 8].map(align4), [0, 4, 4, 4, 8, 8]);
});

Deno.test("string attribute is NUL-terminated and padded", () => {
  // len 4+4 ("eth0") +1 NUL = 9, padded to 12; type 3 = IFLA_IFNAME.
  assertEquals(
    hex(encodeAttrs([nla.str(IfLink.IFLA_IFNAME, "eth0")])),
    "0900" + "0300" + "65746830" + "00" + "000000",
  );
});

Deno.test("u32/u16/u8 attributes are host (little-endian) order", () => {
  assertEquals(
    hex(encodeAttrs([nla.u32(4, 1500), nla.u16(5, 0x1234), nla.u8(6, 7)])),
    "0800" + "0400" + "dc050000" +
      "0600" + "0500" + "3412" + "0000" +
      "0500" + "0600" + "07" + "000000",
  );
});

Deno.test("nested attributes carry NLA_F_NESTED and their full length", () => {
  const bytes = encodeAttrs([
    nla.nested(IfLink.IFLA_LINKINFO, [nla.str(IfLink.IFLA_INFO_KIND, "veth")]),
  ]);
  // outer: 4 + inner(4 + 5 = 9 -> padded 12) = 16, type 18 | 0x8000
  assertEquals(hex(bytes.subarray(0, 4)), "1000" + "1280");
  const outer = Attrs.parse(bytes);
  assertEquals(
    outer.nested(IfLink.IFLA_LINKINFO)?.str(IfLink.IFLA_INFO_KIND),
    "veth",
  );
});

Deno.test("message header: length, type, flags, seq, then the family header", () => {
  const msg = encodeMessage(
    {
      type: Rtnl.RTM_NEWLINK,
      flags: Netlink.NLM_F_REQUEST | Netlink.NLM_F_ACK,
      seq: 7,
    },
    encodeIfInfoMsg({ index: 3, flags: 1, change: 1 }),
    [nla.u32(IfLink.IFLA_MTU, 9000)],
  );
  assertEquals(msg.length, 16 + 16 + 8);
  assertEquals(
    hex(msg.subarray(0, 16)),
    "28000000" + "1000" + "0500" + "07000000" + "00000000",
  );
  const [m] = decodeMessages(msg);
  assertEquals([m.type, m.flags, m.seq, m.pid], [16, 5, 7, 0]);
  const { msg: ifi, rest } = decodeIfInfoMsg(m.body);
  assertEquals([ifi.index, ifi.flags, ifi.change], [3, 1, 1]);
  assertEquals(Attrs.parse(rest).u32(IfLink.IFLA_MTU), 9000);
});

Deno.test("a datagram of several messages (a dump) splits at aligned lengths", () => {
  const a = encodeMessage(
    { type: 16, flags: 2, seq: 1 },
    encodeIfInfoMsg({ index: 1 }),
    [
      nla.str(IfLink.IFLA_IFNAME, "lo"),
    ],
  );
  const done = encodeMessage(
    { type: Netlink.NLMSG_DONE, flags: 2, seq: 1 },
    new Uint8Array(4),
  );
  const buf = new Uint8Array(a.length + done.length);
  buf.set(a);
  buf.set(done, a.length);
  const msgs = decodeMessages(buf);
  assertEquals(msgs.map((m) => m.type), [16, Netlink.NLMSG_DONE]);
  assertEquals(
    Attrs.parse(decodeIfInfoMsg(msgs[0].body).rest).str(IfLink.IFLA_IFNAME),
    "lo",
  );
});

Deno.test("veth peer: nested ifinfomsg followed by attributes round-trips", () => {
  const peer = new Uint8Array([
    ...encodeIfInfoMsg({}),
    ...encodeAttrs([nla.str(IfLink.IFLA_IFNAME, "veth1")]),
  ]);
  const bytes = encodeAttrs([
    nla.nested(IfLink.IFLA_LINKINFO, [
      nla.str(IfLink.IFLA_INFO_KIND, "veth"),
      nla.nested(IfLink.IFLA_INFO_DATA, [nla.bytes(Veth.VETH_INFO_PEER, peer)]),
    ]),
  ]);
  const data = Attrs.parse(bytes).nested(IfLink.IFLA_LINKINFO)!.nested(
    IfLink.IFLA_INFO_DATA,
  )!;
  const p = data.get(Veth.VETH_INFO_PEER)!;
  assertEquals(
    Attrs.parse(decodeIfInfoMsg(p).rest).str(IfLink.IFLA_IFNAME),
    "veth1",
  );
});

Deno.test("repeated attributes keep every occurrence in order", () => {
  const a = Attrs.parse(
    encodeAttrs([nla.u32(1, 10), nla.u32(2, 20), nla.u32(1, 11)]),
  );
  assertEquals(a.all(1).length, 2);
  assertEquals(a.u32(1), 10);
  assertEquals(a.entries().map(([t]) => t), [1, 2, 1]);
});

Deno.test("truncated or lying lengths are rejected, not read past", () => {
  throws(
    () => decodeMessages(Uint8Array.of(0xff, 0, 0, 0, ...new Uint8Array(12))),
    NetlinkDecodeError,
  );
  throws(
    () => decodeMessages(Uint8Array.of(8, 0, 0, 0, ...new Uint8Array(12))),
    NetlinkDecodeError,
  );
  throws(
    () => Attrs.parse(Uint8Array.of(0x20, 0, 1, 0, 1, 2, 3, 4)),
    NetlinkDecodeError,
  );
  throws(() => Attrs.parse(Uint8Array.of(2, 0, 1, 0)), NetlinkDecodeError);
});

Deno.test("tcmsg: u32 filter header with prio and protocol ETH_P_ALL", () => {
  const b = encodeTcMsg({
    ifindex: 5,
    parent: 0xffff0000,
    info: (1 << 16) | htons(0x0003),
  });
  assertEquals(
    hex(b),
    "00000000" + "05000000" + "00000000" + "0000ffff" + "00030100",
  );
  deepStrictEqual(decodeTcMsg(b).msg, {
    family: 0,
    ifindex: 5,
    handle: 0,
    parent: 0xffff0000,
    info: 0x00010300,
  });
});

Deno.test("MAC addresses parse and format; bad ones are refused", () => {
  assertEquals(formatMac(parseMac("0A:58:0a:ff:00:01")), "0a:58:0a:ff:00:01");
  for (
    const bad of [
      "",
      "0a:58:0a:ff:00",
      "0a:58:0a:ff:00:zz",
      "0a:58:0a:ff:00:01:02",
    ]
  ) {
    throws(() => parseMac(bad), TypeError);
  }
});
