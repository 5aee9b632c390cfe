/**
 * Reading a command's input from an API request: the JSON body's fields and
 * the query parameters, each checked with a message that says what, where
 * and what is allowed. Unknown body fields are refused, so a typo never
 * passes silently.
 *
 * @module
 */
import { InvalidInputError } from "../provider/errors.ts";

/** The body as an object with only `allowed` fields ({} when absent). */
export function bodyFields(
  op: string,
  object: string,
  body: unknown,
  allowed: readonly string[],
): Record<string, unknown> {
  if (body === undefined || body === null) return {};
  if (typeof body !== "object" || Array.isArray(body)) {
    throw new InvalidInputError(
      op,
      object,
      "the request body must be a JSON object",
    );
  }
  const unknown = Object.keys(body).filter((k) => !allowed.includes(k));
  if (unknown.length) {
    throw new InvalidInputError(
      op,
      object,
      `unknown field${unknown.length > 1 ? "s" : ""} ${
        unknown.map((k) => JSON.stringify(k)).join(", ")
      } in the request body; allowed: ${allowed.join(", ") || "none"}`,
    );
  }
  return body as Record<string, unknown>;
}

/** An optional integer field within [min, max]. */
export function intField(
  op: string,
  object: string,
  f: Record<string, unknown>,
  key: string,
  min: number,
  max: number,
): number | undefined {
  const v = f[key];
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw new InvalidInputError(
      op,
      object,
      `"${key}" must be an integer ${min}–${max}, got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

/** An optional string field. */
export function strField(
  op: string,
  object: string,
  f: Record<string, unknown>,
  key: string,
): string | undefined {
  const v = f[key];
  if (v === undefined) return undefined;
  if (typeof v !== "string") {
    throw new InvalidInputError(
      op,
      object,
      `"${key}" must be a string, got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

/** An optional boolean field. */
export function boolField(
  op: string,
  object: string,
  f: Record<string, unknown>,
  key: string,
): boolean | undefined {
  const v = f[key];
  if (v === undefined) return undefined;
  if (typeof v !== "boolean") {
    throw new InvalidInputError(
      op,
      object,
      `"${key}" must be true or false, got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

/** An optional list-of-strings field. */
export function strsField(
  op: string,
  object: string,
  f: Record<string, unknown>,
  key: string,
): string[] | undefined {
  const v = f[key];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) {
    throw new InvalidInputError(
      op,
      object,
      `"${key}" must be a list of strings, got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

/** A `true`/`false` query parameter (absent: false). */
export function queryFlag(
  op: string,
  object: string,
  query: Record<string, string>,
  key: string,
): boolean {
  const v = query[key];
  if (v === undefined || v === "false") return false;
  if (v === "true" || v === "") return true;
  throw new InvalidInputError(
    op,
    object,
    `query parameter "${key}" must be true or false, got ${JSON.stringify(v)}`,
  );
}

/** Only these query parameters. */
export function onlyQuery(
  op: string,
  object: string,
  query: Record<string, string>,
  allowed: readonly string[],
): void {
  const unknown = Object.keys(query).filter((k) => !allowed.includes(k));
  if (unknown.length) {
    throw new InvalidInputError(
      op,
      object,
      `unknown query parameter ${JSON.stringify(unknown[0])}; allowed: ${
        allowed.join(", ") || "none"
      }`,
    );
  }
}
