/** The assertions these tests use, from Node's built-in `assert` module. */
export {
  deepStrictEqual,
  deepStrictEqual as assertEquals,
  throws,
} from "node:assert/strict";
