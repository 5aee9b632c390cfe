/**
 * Bad requests to `vmnic serve` get clear JSON errors and change nothing
 * (issue #10 §2, §5): malformed JSON (400), a 10 MB body, declared or
 * chunked (413), an unknown route (404), a wrong method (405 with `Allow`),
 * an unknown body field or query parameter (400 naming it), a body where a
 * route takes none, and a client that sends its headers and part of its
 * body and then stalls (408 after the daemon's 10 s). Each request is one
 * that would change the VM if it were taken (add a NIC); after each, the
 * records, netns, veths, leases, lock files and backups are as before, and
 * the daemon serves others all along, also while the slow client stalls.
 */
import assert from "node:assert/strict";
import { rootTest } from "../support/harness.ts";
import { makeFixture } from "../provider/_fixture.ts";
import { BODY_TIMEOUT_MS, MAX_BODY_BYTES } from "../../src/server/server.ts";
import {
  at,
  killDaemons,
  type Reply,
  request,
  socketDir,
  startDaemon,
} from "./_daemon.ts";
import { holdings } from "./_state.ts";

interface ErrorJson {
  error: {
    type: string;
    message: string;
    op?: string;
    object?: string;
    reason?: string;
  };
}

/** Asserts a JSON error of `status` and `type`; returns its message. */
function jsonError(
  r: Reply,
  status: number,
  type: string,
  what: string,
): string {
  assert.equal(r.status, status, `${what}: ${r.status} ${r.text}`);
  assert.match(r.headers["content-type"] ?? "", /application\/json/, what);
  const e = (r.json as ErrorJson | undefined)?.error;
  assert.ok(e, `${what}: not the error JSON: ${r.text}`);
  assert.equal(e.type, type, `${what}: ${r.text}`);
  assert.ok(e.message.length > 0, what);
  return e.message;
}

rootTest(
  "api: malformed, oversized, misrouted, unknown-field and stalled requests get clear errors and change nothing",
  async () => {
    const fx = await makeFixture("bad", { octet: 164 });
    const dir = await socketDir();
    try {
      const socket = at(dir, "vmnic.sock");
      const daemon = await startDaemon(fx, { socket });
      const ok = await request(socket, "POST", "/v1/vms/vmA/nics", {
        json: { nics: 1 },
      });
      assert.equal(ok.status, 200, ok.text);
      const before = await holdings(fx);
      const unchanged = async (what: string) =>
        assert.deepEqual(await holdings(fx), before, `${what} changed things`);

      // The slow client first: the others are served while it stalls.
      const nics = "/v1/vms/vmA/nics";
      const started = performance.now();
      const slow = request(socket, "POST", nics, {
        // Headers, then 11 of the 100 bytes declared; then nothing.
        body: '{"nics": 2,',
        declaredLength: 100,
        timeoutMs: BODY_TIMEOUT_MS + 20_000,
      });

      let what = "malformed JSON";
      let m = jsonError(
        await request(socket, "POST", nics, { body: '{"nics": 2' }),
        400,
        "UsageError",
        what,
      );
      assert.match(m, /^the request body is not JSON: /, what);
      await unchanged(what);

      what = "a 10 MB body (content-length)";
      m = jsonError(
        await request(socket, "POST", nics, { size: 10 * 1024 * 1024 }),
        413,
        "UsageError",
        what,
      );
      assert.equal(
        m,
        `the request body is larger than ${MAX_BODY_BYTES} bytes`,
        what,
      );
      await unchanged(what);

      what = "a 10 MB body (chunked, no length)";
      m = jsonError(
        await request(socket, "POST", nics, {
          size: 10 * 1024 * 1024,
          chunked: true,
        }),
        413,
        "UsageError",
        what,
      );
      assert.equal(
        m,
        `the request body is larger than ${MAX_BODY_BYTES} bytes`,
        what,
      );
      await unchanged(what);

      what = "an unknown route";
      m = jsonError(
        await request(socket, "POST", "/v1/vms/vmA/nic", { json: { nics: 2 } }),
        404,
        "UsageError",
        what,
      );
      assert.equal(
        m,
        "no route POST /v1/vms/vmA/nic (GET /v1/openapi.json lists them)",
      );
      await unchanged(what);

      what = "a wrong method";
      const put = await request(socket, "PUT", nics, { json: { nics: 2 } });
      m = jsonError(put, 405, "UsageError", what);
      assert.deepEqual(put.headers["allow"]?.split(/,\s*/).sort(), [
        "GET",
        "POST",
      ]);
      assert.match(m, /^PUT is not allowed on \/v1\/vms\/vmA\/nics; allowed: /);
      await unchanged(what);

      what = "an unknown body field";
      const typo = await request(socket, "POST", nics, {
        json: { nics: 2, netwrok: "x" },
      });
      m = jsonError(typo, 400, "InvalidInputError", what);
      assert.match(m, /unknown field "netwrok" in the request body; allowed: /);
      assert.deepEqual(
        {
          op: (typo.json as ErrorJson).error.op,
          object: (typo.json as ErrorJson).error.object,
        },
        { op: "add", object: "vmA" },
      );
      await unchanged(what);

      what = "an unknown query parameter";
      m = jsonError(
        await request(socket, "POST", `${nics}?nics=2`, { json: { nics: 2 } }),
        400,
        "InvalidInputError",
        what,
      );
      assert.match(m, /unknown query parameter "nics"/, what);
      await unchanged(what);

      what = "a body where the route takes none";
      m = jsonError(
        await request(socket, "POST", "/v1/vms/vmA/quiesce", {
          json: { now: true },
        }),
        400,
        "InvalidInputError",
        what,
      );
      assert.match(m, /unknown field "now" in the request body; allowed: none/);
      await unchanged(what);

      what = "a body that is not an object";
      m = jsonError(
        await request(socket, "POST", nics, { json: [2] }),
        400,
        "InvalidInputError",
        what,
      );
      assert.match(m, /the request body must be a JSON object/, what);
      await unchanged(what);

      // All of that while the slow client held its request open.
      const stalled = await slow;
      const elapsed = performance.now() - started;
      what = "a client that stalls mid-body";
      m = jsonError(stalled, 408, "UsageError", what);
      assert.equal(
        m,
        `the request body did not arrive within ${BODY_TIMEOUT_MS} ms`,
      );
      assert.ok(
        elapsed >= BODY_TIMEOUT_MS && elapsed < BODY_TIMEOUT_MS + 5_000,
        `408 after ${Math.round(elapsed)} ms`,
      );
      await unchanged(what);

      // Still serving, and a good request still works.
      const health = await request(socket, "GET", "/v1/health");
      assert.equal(health.status, 200);
      assert.equal((health.json as { inFlight: number }).inFlight, 0);
      const two = await request(socket, "POST", nics, { json: { nics: 2 } });
      assert.equal(two.status, 200, two.text);
      assert.equal((two.json as unknown[]).length, 2);
      assert.deepEqual(await daemon.stop(), { code: 0, signal: null });
    } finally {
      await killDaemons();
      await fx.cleanup();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
