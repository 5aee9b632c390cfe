/**
 * `vmnic inspect <nic-id>` / `GET /v1/nics/{id}`.
 *
 * @module
 */
import { NotFoundError } from "../../provider/errors.ts";
import { defineCommand } from "../command.ts";
import { onlyQuery } from "../http_input.ts";
import { nicTable } from "../output.ts";
import { nicConfig } from "../schemas.ts";

export default defineCommand({
  name: "inspect",
  usage: "vmnic inspect <nic-id>",
  positionals: [1, 1],
  options: {},
  parse: (p) => ({ id: p.positionals[0] }),
  async run(i, { provider }) {
    const nic = await provider.inspect(i.id);
    if (!nic) {
      throw new NotFoundError(
        "inspect",
        i.id,
        `no NIC with id ${JSON.stringify(i.id)}`,
      );
    }
    return nic;
  },
  human: (nic) => nicTable([nic]),
  http: {
    method: "GET",
    path: "/v1/nics/{id}",
    response: nicConfig,
    input({ params, query }) {
      onlyQuery("inspect", params.id, query, []);
      return { id: params.id };
    },
    request(i) {
      // No path segment carries "", "." or "..": a URL drops or resolves
      // them (GET /v1/nics/.. is GET /v1/). The CLI asks in process.
      if (i.id === "" || i.id === "." || i.id === "..") {
        throw new RangeError("no path segment carries this id");
      }
      return { params: { id: i.id }, query: {} };
    },
  },
});
