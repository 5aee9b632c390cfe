/**
 * Writes docs/openapi.json from the command table (`deno task openapi`);
 * with `--check`, exits 1 when the committed document is out of date.
 *
 * @module
 */
import { loadRoutes, openApiDocument } from "../src/server/routes.ts";

const path = new URL("../docs/openapi.json", import.meta.url).pathname;
const text = JSON.stringify(openApiDocument(await loadRoutes()), null, 2) +
  "\n";
if (Deno.args.includes("--check")) {
  const committed = await Deno.readTextFile(path).catch(() => "");
  if (committed !== text) {
    console.error(`${path} is out of date: run deno task openapi`);
    Deno.exit(1);
  }
} else {
  await Deno.writeTextFile(path, text);
  console.error(`wrote ${path}`);
}
