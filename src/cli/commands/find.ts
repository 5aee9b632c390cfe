/**
 * `vmnic find --ip ADDRESS` / `GET /v1/nics?ip=ADDRESS`: the NIC holding
 * an address, over every VM (what `list --ip` gives, as a route).
 *
 * @module
 */
import { InvalidInputError } from "../../provider/errors.ts";
import { str, UsageError } from "../args.ts";
import { defineCommand } from "../command.ts";
import { onlyQuery } from "../http_input.ts";
import { nicTable } from "../output.ts";
import { nicList, str as strS } from "../schemas.ts";

export default defineCommand({
  name: "find",
  usage: "vmnic find --ip ADDRESS",
  positionals: [0, 0],
  options: {
    ip: {
      type: "string",
      value: "ADDRESS",
      help: "the address (IPv4 or IPv6) whose NIC to find",
    },
  },
  parse(p) {
    const ip = str(p, "ip");
    if (ip === undefined) {
      throw new UsageError("find: --ip is required", "find");
    }
    return { ip };
  },
  run: (i, { provider }) => provider.list({ ip: i.ip }),
  human: (nics) => nicTable(nics),
  http: {
    method: "GET",
    path: "/v1/nics",
    query: {
      ip: {
        schema: strS,
        description: "the address whose NIC to find (required)",
      },
    },
    response: nicList,
    input({ query }) {
      onlyQuery("find", "*", query, ["ip"]);
      if (query.ip === undefined) {
        throw new InvalidInputError(
          "find",
          "*",
          'query parameter "ip" is required',
        );
      }
      return { ip: query.ip };
    },
    request: (i) => ({ params: {}, query: { ip: i.ip } }),
  },
});
