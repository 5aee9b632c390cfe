/**
 * A small JSON Schema check for the daemon tests: the keywords the OpenAPI
 * document uses (`type`, `properties`, `required`, `additionalProperties`,
 * `items`, `enum`, `pattern`, `oneOf`), so a test can hold each answer to the
 * schema the document promises.
 *
 * @module
 */

/** A JSON Schema. */
export type Schema = Record<string, unknown>;

/** Where `value` breaks `schema`: one line per problem; `[]` when it fits. */
export function schemaProblems(
  schema: Schema,
  value: unknown,
  at = "$",
): string[] {
  const out: string[] = [];
  if (Array.isArray(schema.oneOf)) {
    const fits = (schema.oneOf as Schema[]).filter((alt) =>
      schemaProblems(alt, value, at).length === 0
    ).length;
    if (fits !== 1) {
      out.push(
        `${at}: ${
          JSON.stringify(value)
        } fits ${fits} of its oneOf's ${schema.oneOf.length} schemas, not 1`,
      );
    }
  }
  const type = schema.type as string | string[] | undefined;
  if (type !== undefined) {
    const types = Array.isArray(type) ? type : [type];
    if (!types.some((t) => isType(t, value))) {
      return [`${at}: ${JSON.stringify(value)} is not ${types.join(" or ")}`];
    }
  }
  if (Array.isArray(schema.enum) && !schema.enum.includes(value)) {
    out.push(
      `${at}: ${JSON.stringify(value)} is not one of ${
        JSON.stringify(schema.enum)
      }`,
    );
  }
  if (typeof schema.pattern === "string" && typeof value === "string") {
    if (!new RegExp(schema.pattern, "u").test(value)) {
      out.push(
        `${at}: ${JSON.stringify(value)} does not match ${schema.pattern}`,
      );
    }
  }
  if (isType("object", value)) {
    const obj = value as Record<string, unknown>;
    const props = (schema.properties ?? {}) as Record<string, Schema>;
    for (const k of (schema.required ?? []) as string[]) {
      if (!(k in obj)) out.push(`${at}: "${k}" is missing`);
    }
    for (const [k, v] of Object.entries(obj)) {
      if (k in props) out.push(...schemaProblems(props[k], v, `${at}.${k}`));
      else if (schema.additionalProperties === false) {
        out.push(`${at}: "${k}" is not in the schema`);
      } else if (
        typeof schema.additionalProperties === "object" &&
        schema.additionalProperties !== null
      ) {
        out.push(
          ...schemaProblems(
            schema.additionalProperties as Schema,
            v,
            `${at}.${k}`,
          ),
        );
      }
    }
  }
  if (Array.isArray(value) && schema.items) {
    value.forEach((v, i) =>
      out.push(...schemaProblems(schema.items as Schema, v, `${at}[${i}]`))
    );
  }
  return out;
}

function isType(t: string, v: unknown): boolean {
  switch (t) {
    case "object":
      return typeof v === "object" && v !== null && !Array.isArray(v);
    case "array":
      return Array.isArray(v);
    case "string":
      return typeof v === "string";
    case "integer":
      return Number.isInteger(v);
    case "number":
      return typeof v === "number";
    case "boolean":
      return typeof v === "boolean";
    case "null":
      return v === null;
  }
  return false;
}
