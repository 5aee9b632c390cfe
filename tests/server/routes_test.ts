/**
 * The API as docs/openapi.json promises it, checked with `curl
 * --unix-socket` against a real daemon: every documented route answers
 * 200 to a valid request (never 404 or 405), with a body that fits the
 * documented schema; every documented body field is known to its route;
 * the methods a path does not document get 405 with `Allow` naming those it
 * does, and paths the document does not have get 404; the committed
 * document is the one `GET /v1/openapi.json` serves and the one the command
 * table makes (`scripts/gen_openapi.ts --check`); the daemon's routes are
 * exactly the documented ones.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { rootTest, run } from "../support/harness.ts";
import { REPO_ROOT } from "../support/cli.ts";
import { makeFixture } from "../provider/_fixture.ts";
import { loadRoutes } from "../../src/server/routes.ts";
import { COMMANDS } from "../../src/cli/table.ts";
import { VERSION } from "../../src/version.ts";
import type { NicConfig } from "../../src/provider/types.ts";
import {
  at,
  curl,
  type CurlReply,
  killDaemons,
  socketDir,
  startDaemon,
} from "./_daemon.ts";
import { type Schema, schemaProblems } from "./_schema.ts";

type Doc = {
  paths: Record<
    string,
    Record<string, {
      operationId: string;
      requestBody?: {
        content: { "application/json": { schema: Schema } };
      };
      responses: Record<
        string,
        { content: Record<string, { schema: Schema }> }
      >;
    }>
  >;
};

const DOC_PATH = join(REPO_ROOT, "docs/openapi.json");
const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/** Every documented operation, as `METHOD /template`. */
function operations(doc: Doc): string[] {
  return Object.entries(doc.paths).flatMap(([path, ops]) =>
    Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)
  ).sort();
}

/** Asserts a JSON error answer of `status` with a `UsageError`-style body. */
function assertJsonError(r: CurlReply, status: number, what: string) {
  assert.equal(r.status, status, `${what}: ${r.status} ${r.text}`);
  assert.match(r.headers["content-type"] ?? "", /application\/json/, what);
  const e = (r.json as { error?: { type?: string; message?: string } })
    ?.error;
  assert.ok(e?.type && e.message, `${what}: ${r.text}`);
}

rootTest(
  "api: every documented route answers (curl), fits its schema, and the daemon serves exactly the committed docs/openapi.json",
  async (t) => {
    const fx = await makeFixture("rte", { octet: 163 });
    const dir = await socketDir();
    try {
      const socket = at(dir, "vmnic.sock");
      await startDaemon(fx, { socket });
      const committed = await Deno.readTextFile(DOC_PATH);
      const doc = JSON.parse(committed) as Doc;

      await t.step(
        "the committed document is the one served and generated",
        async () => {
          const served = await curl(socket, "GET", "/v1/openapi.json");
          assert.equal(served.status, 200);
          assert.deepEqual(served.json, doc);
          assert.equal(served.text.trimEnd(), committed.trimEnd());
          const check = await run(Deno.execPath(), [
            "run",
            "--allow-read",
            "scripts/gen_openapi.ts",
            "--check",
          ], { cwd: REPO_ROOT });
          assert.equal(check.code, 0, check.stderr);
        },
      );

      await t.step("the daemon's routes are the documented ones", async () => {
        const served = (await loadRoutes()).map((r) => `${r.method} ${r.path}`)
          .sort();
        assert.deepEqual(served, operations(doc));
        // Each command with a route is documented under its name.
        for (const [name, entry] of Object.entries(COMMANDS)) {
          const http = (await entry.load()).default.http;
          if (!http) continue;
          const op = doc.paths[http.path]?.[http.method.toLowerCase()];
          assert.equal(op?.operationId, name, `${http.method} ${http.path}`);
        }
      });

      await t.step(
        "every documented route answers 200 with its schema",
        async () => {
          let nicId = "";
          let nicIp = "";
          // How to call each documented operation, in an order that works:
          // what makes VMs first, what removes them last.
          const calls: [string, () => { path: string; body?: unknown }][] = [
            ["POST /v1/vms/{vm}/nics", () => ({
              path: "/v1/vms/vmA/nics",
              body: { nics: 2 },
            })],
            ["POST /v1/vms/{vm}", () => ({
              path: "/v1/vms/vmP",
              body: { adopt: false },
            })],
            ["GET /v1/health", () => ({ path: "/v1/health" })],
            ["POST /v1/cli", () => ({
              path: "/v1/cli",
              body: { argv: ["--json", "vms"], env: {}, version: VERSION },
            })],
            ["GET /v1/openapi.json", () => ({ path: "/v1/openapi.json" })],
            ["GET /v1/version", () => ({ path: "/v1/version" })],
            ["GET /v1/pool", () => ({ path: "/v1/pool" })],
            ["GET /v1/networks", () => ({ path: "/v1/networks" })],
            ["GET /v1/hooks", () => ({ path: "/v1/hooks" })],
            ["GET /v1/vms", () => ({ path: "/v1/vms" })],
            ["GET /v1/events", () => ({
              path: "/v1/events?vm=vmA&since=1h&op=add&failed=false&limit=10",
            })],
            ["GET /metrics", () => ({ path: "/metrics" })],
            ["GET /v1/vms/{vm}/nics", () => ({ path: "/v1/vms/vmA/nics" })],
            ["GET /v1/nics/{id}", () => ({ path: `/v1/nics/${nicId}` })],
            ["GET /v1/nics", () => ({ path: `/v1/nics?ip=${nicIp}` })],
            ["POST /v1/vms/{vm}/nics/{index}/policy", () => ({
              path: "/v1/vms/vmA/nics/0/policy",
              body: {
                rate: "50mbit",
                egress: [{ action: "deny", cidr: "10.66.0.0/16" }],
              },
            })],
            ["GET /v1/vms/{vm}/guest-config", () => ({
              path: "/v1/vms/vmA/guest-config?format=netplan",
            })],
            ["GET /v1/vms/{vm}/hv-args", () => ({
              path: "/v1/vms/vmA/hv-args?for=qemu&vhost=true",
            })],
            ["POST /v1/vms/{vm}/verify", () => ({
              path: "/v1/vms/vmA/verify",
              body: { skipCheck: false },
            })],
            ["POST /v1/vms/{vm}/quiesce", () => ({
              path: "/v1/vms/vmA/quiesce",
            })],
            ["POST /v1/vms/{vm}/unquiesce", () => ({
              path: "/v1/vms/vmA/unquiesce",
            })],
            ["POST /v1/vms/{vm}/recover", () => ({
              path: "/v1/vms/vmA/recover",
            })],
            ["POST /v1/gc", () => ({
              path: "/v1/gc",
              body: { active: ["vmA", "vmP"], dryRun: false },
            })],
            ["DELETE /v1/vms/{vm}/nics/{index}", () => ({
              path: "/v1/vms/vmA/nics/1?force=false",
            })],
            ["DELETE /v1/vms/{vm}", () => ({ path: "/v1/vms/vmA?force=true" })],
          ];
          assert.deepEqual(
            calls.map(([op]) => op).sort(),
            operations(doc),
            "the test calls every documented operation (a new route needs a call here)",
          );
          for (const [op, make] of calls) {
            const [method, template] = op.split(" ");
            const { path, body } = make();
            const r = await curl(socket, method, path, { body });
            assert.equal(r.code, 0, `${op}: curl: ${r.stderr}`);
            assert.equal(
              r.status,
              200,
              `${op} (${path}): ${r.status} ${r.text}`,
            );
            const [[type, { schema }]] = Object.entries(
              doc.paths[template][method.toLowerCase()].responses["200"]
                .content,
            );
            assert.ok(
              (r.headers["content-type"] ?? "").startsWith(type),
              `${op}: ${r.headers["content-type"]}, documented ${type}`,
            );
            assert.deepEqual(
              schemaProblems(
                schema,
                type === "application/json" ? r.json : r.text,
              ),
              [],
              `${op}: the answer does not fit its documented schema`,
            );
            if (op === "POST /v1/vms/{vm}/nics") {
              const nics = r.json as NicConfig[];
              assert.deepEqual(nics.map((n) => n.index), [0, 1]);
              nicId = nics[0].id;
              nicIp = nics[0].ips[0].address;
            }
          }
          // What the calls made, they removed.
          const vms = await curl(socket, "GET", "/v1/vms");
          assert.deepEqual(
            (vms.json as { vmId: string }[]).map((v) => v.vmId),
            ["vmP"],
          );
          assert.equal(
            (await curl(socket, "DELETE", "/v1/vms/vmP")).status,
            200,
          );
        },
      );

      await t.step(
        "every documented body field is known to its route",
        async () => {
          for (const [path, ops] of Object.entries(doc.paths)) {
            for (const [m, op] of Object.entries(ops)) {
              const schema = op.requestBody?.content["application/json"].schema;
              if (!schema) continue;
              // Every field at once, each of its type: a request the route
              // may refuse (some fields exclude others) but never for a field
              // it does not know. Booleans are true: gc only dry-runs.
              const body: Record<string, unknown> = {};
              for (
                const [k, s] of Object.entries(
                  schema.properties as Record<string, Schema>,
                )
              ) {
                body[k] = s.type === "integer"
                  ? 1
                  : s.type === "boolean"
                  ? true
                  : s.type === "array"
                  ? []
                  : "x";
              }
              const concrete = path.replace("{vm}", "vmQ");
              const r = await curl(socket, m.toUpperCase(), concrete, { body });
              assert.ok(
                r.status === 200 || r.status === 400,
                `${m} ${path}: ${r.status} ${r.text}`,
              );
              assert.doesNotMatch(r.text, /unknown field/, `${m} ${path}`);
            }
          }
          // Only prepare (its one field, adopt) made something: vmQ.
          const vms = (await curl(socket, "GET", "/v1/vms")).json as {
            vmId: string;
            nics: unknown[];
          }[];
          assert.deepEqual(vms.map((v) => [v.vmId, v.nics.length]), [[
            "vmQ",
            0,
          ]]);
          assert.equal(
            (await curl(socket, "DELETE", "/v1/vms/vmQ")).status,
            200,
          );
        },
      );

      await t.step(
        "undocumented methods get 405 with Allow, undocumented paths 404",
        async () => {
          for (const [template, ops] of Object.entries(doc.paths)) {
            const path = template.replace("{vm}", "vmA").replace("{id}", "x")
              .replace("{index}", "0");
            const documented = Object.keys(ops).map((m) => m.toUpperCase());
            for (const method of METHODS) {
              if (documented.includes(method)) continue;
              const r = await curl(socket, method, path);
              const what = `${method} ${path}`;
              assertJsonError(r, 405, what);
              assert.deepEqual(
                (r.headers["allow"] ?? "").split(/,\s*/).sort(),
                documented.sort(),
                `${what}: Allow`,
              );
            }
          }
          for (
            const path of [
              "/",
              "/v1",
              "/v1/",
              "/v1/nicz",
              "/v2/health",
              "/v1/healthz",
              "/v1/vms/vmA/bogus",
              "/v1/vms/vmA/nics/0/extra",
              "/v1/openapi.yaml",
            ]
          ) {
            for (const method of ["GET", "POST"]) {
              const r = await curl(socket, method, path);
              assertJsonError(r, 404, `${method} ${path}`);
              assert.match(
                (r.json as { error: { message: string } }).error.message,
                /no route/,
              );
            }
          }
        },
      );
    } finally {
      await killDaemons();
      await fx.cleanup();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
