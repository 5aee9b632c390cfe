/**
 * `vmnic policy <vm> <index> [flags]` / `POST /v1/vms/{vm}/nics/{index}/policy`:
 * changes a live NIC's policy in place (docs/policy.md). Each flag given
 * replaces what was asked for before (`--egress-*` replace the whole list
 * of the call's rules); `--reset FIELD` puts one back to the network's or
 * built-in default. Without flags, the policy is resolved and applied
 * again (after a policy file change).
 *
 * @module
 */
import { InvalidInputError } from "../../provider/errors.ts";
import type { PolicyChange } from "../../provider/policy_op.ts";
import { UNSETTABLE } from "../../provider/policy_op.ts";
import { policySummary, rateText } from "../../provider/policy.ts";
import { validateIndex, validateVmId } from "../../provider/validate.ts";
import { strs, UsageError } from "../args.ts";
import { defineCommand } from "../command.ts";
import { bodyFields, onlyQuery } from "../http_input.ts";
import {
  POLICY_OPTIONS,
  POLICY_SCHEMA,
  policyFromFlags,
} from "../policy_flags.ts";
import { arr, oneOf, policyResult } from "../schemas.ts";

interface PolicyInput {
  vmId: string;
  index: number;
  change: PolicyChange;
}

type Unsettable = (typeof UNSETTABLE)[number];

function checkTarget(op: string, vm: string, index: string): number {
  validateVmId(op, vm);
  if (!/^\d+$/.test(index)) {
    throw new InvalidInputError(
      op,
      vm,
      `index must be an integer 0–31, got ${JSON.stringify(index)}`,
    );
  }
  validateIndex(op, vm, Number(index));
  return Number(index);
}

function checkUnset(
  op: string,
  object: string,
  values: unknown,
): Unsettable[] {
  if (
    !Array.isArray(values) ||
    !values.every((v) => (UNSETTABLE as readonly unknown[]).includes(v))
  ) {
    throw new InvalidInputError(
      op,
      object,
      `reset ${JSON.stringify(values)}: allowed fields ${
        UNSETTABLE.join(", ")
      }`,
    );
  }
  return values as Unsettable[];
}

export default defineCommand({
  name: "policy",
  usage: "vmnic policy <vm> <index> [--rate R[:B]] [--rate-in R[:B]] " +
    "[--rate-out R[:B]] [--egress-deny|--egress-allow CIDR[,PROTO[:PORT]]]... " +
    "[--isolate | --no-isolate] [--allow-spoofing | --anti-spoofing] " +
    "[--reset FIELD]...",
  positionals: [2, 2],
  options: {
    ...POLICY_OPTIONS,
    "no-isolate": {
      type: "boolean",
      help: "isolation off",
    },
    "anti-spoofing": {
      type: "boolean",
      help: "anti-spoofing on",
    },
    reset: {
      type: "string",
      multiple: true,
      value: "FIELD",
      help: `put a field back to the network's or built-in default: ${
        UNSETTABLE.join(", ")
      }`,
    },
  },
  details: [
    "Changes the NIC in place, with no gap for traffic both the old and",
    "the new policy allow. A flag given replaces what the add (or an",
    "earlier change) asked for; --egress-* replace the whole list of those",
    "rules. Without flags the policy is resolved again with the policy file",
    "as it is now, and applied. Rates: none = unlimited.",
  ].join("\n"),
  parse(p) {
    const op = "policy";
    const [vm, idx] = p.positionals;
    const index = (() => {
      try {
        return checkTarget(op, vm, idx);
      } catch (e) {
        throw new UsageError(`policy: ${(e as Error).message}`, op);
      }
    })();
    const object = `${vm}/${index}`;
    const set = policyFromFlags(op, object, p);
    const bad = (msg: string) => new UsageError(`policy: ${msg}`, op);
    if (p.values["no-isolate"] === true) {
      if (set.isolate) throw bad("--isolate and --no-isolate: give one");
      set.isolate = false;
    }
    if (p.values["anti-spoofing"] === true) {
      if (set.antiSpoofing === false) {
        throw bad("--allow-spoofing and --anti-spoofing: give one");
      }
      set.antiSpoofing = true;
    }
    const unset = checkUnset(op, object, strs(p, "reset"));
    return {
      vmId: vm,
      index,
      change: {
        ...(Object.keys(set).length ? { set } : {}),
        ...(unset.length ? { unset } : {}),
      },
    };
  },
  run: (i: PolicyInput, { provider }) =>
    provider.policy(i.vmId, i.index, i.change),
  human: (r) => {
    const p = r.policy;
    return [
      `${r.vmId}/${r.index}: ${
        r.changed ? "policy applied" : "policy unchanged"
      }: ${policySummary(p)}`,
      ...(p.rateIn ? [`  toward the guest: ${rateText(p.rateIn)}`] : []),
      ...(p.rateOut ? [`  from the guest: ${rateText(p.rateOut)}`] : []),
      ...p.egress.map((e) =>
        `  ${e.action} ${e.cidr}${e.protocol ? ` ${e.protocol}` : ""}${
          e.port !== undefined ? ` port ${e.port}` : ""
        } (${e.source})`
      ),
      ...r.actions.map((a) => `  ${a}`),
    ].join("\n");
  },
  http: {
    method: "POST",
    path: "/v1/vms/{vm}/nics/{index}/policy",
    body: {
      ...POLICY_SCHEMA,
      properties: {
        ...(POLICY_SCHEMA.properties as Record<string, unknown>),
        reset: arr(oneOf(...UNSETTABLE)),
      },
    },
    response: policyResult,
    input({ params, query, body }) {
      const op = "policy";
      const index = checkTarget(op, params.vm, params.index);
      onlyQuery(op, params.vm, query, []);
      const object = `${params.vm}/${index}`;
      const f = bodyFields(op, object, body, [...UNSETTABLE, "reset"]);
      const { reset, ...set } = f;
      const unset = reset === undefined ? [] : checkUnset(op, object, reset);
      return {
        vmId: params.vm,
        index,
        change: {
          ...(Object.keys(set).length ? { set } : {}),
          ...(unset.length ? { unset } : {}),
        },
      };
    },
    request: (i) => ({
      params: { vm: i.vmId, index: String(i.index) },
      query: {},
      body: {
        ...(i.change.set ?? {}),
        ...(i.change.unset?.length ? { reset: [...i.change.unset] } : {}),
      },
    }),
  },
});
