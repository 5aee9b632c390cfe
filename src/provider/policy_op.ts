/**
 * `policy`: changes a live NIC's policy in place (docs/policy.md): the
 * fields given replace those asked for before, the policy in effect is
 * resolved again (the network's defaults as the policy file says now,
 * then the built-in ones), applied to the NIC's devices without a gap for
 * what both policies allow, and recorded. One event, operation `policy`.
 *
 * @module
 */
import { applyNicPolicy } from "../wiring/nic.ts";
import { type ProviderContext, withVmLock } from "./context.ts";
import {
  ConflictError,
  InvalidInputError,
  NotFoundError,
  OperationError,
  reasonOf,
} from "./errors.ts";
import { asRecord, policyFileOf } from "./nic_policy.ts";
import {
  mergeSpec,
  networkDefaults,
  type NicPolicy,
  type NormalizedSpec,
  normalizeSpec,
  policyOf,
  type PolicyRecord,
  type PolicySpec,
  resolvePolicy,
} from "./policy.ts";
import { tapPolicyFor } from "./dhcp.ts";
import { validateIndex, validateVmId } from "./validate.ts";

/** Policy fields that a change can put back to their default. */
export const UNSETTABLE = [
  "rate",
  "rateIn",
  "rateOut",
  "antiSpoofing",
  "egress",
  "isolate",
] as const;

/** A change of a NIC's policy. */
export interface PolicyChange {
  /** Fields to set (each replaces what was asked for; `egress` the whole list). */
  set?: PolicySpec;
  /** Fields to put back to the network's or built-in default. */
  unset?: readonly (typeof UNSETTABLE)[number][];
}

/** What `policy` did. */
export interface PolicyResult {
  /** The VM. */
  vmId: string;
  /** The NIC. */
  index: number;
  /** The kernel was changed (false: it already had this policy). */
  changed: boolean;
  /** What was changed, one line each. */
  actions: string[];
  /** What is asked for now (the fields the call and earlier changes gave). */
  asked: NormalizedSpec;
  /** The policy in effect now. */
  policy: NicPolicy;
}

/**
 * Changes (or, with no fields, re-applies) the policy of NIC `index` of
 * `vmId`. Throws `NotFoundError` for no such NIC, `ConflictError` for one
 * that is not live or is a clone NIC, `InvalidInputError` for bad fields.
 */
export async function setPolicy(
  ctx: ProviderContext,
  vmId: string,
  index: number,
  change: PolicyChange = {},
): Promise<PolicyResult> {
  const op = "policy";
  validateVmId(op, vmId);
  validateIndex(op, vmId, index);
  const object = `${vmId}/${index}`;
  const set = normalizeSpec(
    op,
    object,
    change.set ?? {},
    (f) => f ? `policy.${f}` : "policy",
  );
  for (const k of change.unset ?? []) {
    if (!(UNSETTABLE as readonly string[]).includes(k)) {
      throw new InvalidInputError(
        op,
        object,
        `unset: unknown field ${JSON.stringify(k)}; allowed: ${
          UNSETTABLE.join(", ")
        }`,
      );
    }
    if (k in set) {
      throw new InvalidInputError(
        op,
        object,
        `${k} is both set and put back to its default: give one`,
      );
    }
  }
  return await withVmLock(ctx, op, vmId, (ctx) => {
    const rec = ctx.store.getNicByIndex(vmId, index);
    if (!rec) {
      throw new NotFoundError(op, object, `VM ${vmId} has no NIC ${index}`);
    }
    if (rec.state !== "active" && rec.state !== "quiesced") {
      throw new ConflictError(
        op,
        object,
        `NIC ${index} is ${rec.state}: only a live NIC's policy can change ` +
          `(run \`vmnic verify ${vmId}\`)`,
      );
    }
    if (rec.guest) {
      throw new ConflictError(
        op,
        object,
        `NIC ${index} is a clone NIC (a routed path, docs/clones.md): ` +
          `policies apply to the TAP path's redirects`,
      );
    }
    const file = policyFileOf(ctx, op);
    const before = policyOf(rec);
    const spec = mergeSpec(before?.spec ?? {}, set, change.unset ?? []);
    const next: PolicyRecord = {
      spec,
      effective: resolvePolicy(spec, networkDefaults(file, rec.network)),
    };
    const updated = { ...rec, policy: asRecord(next) };
    const apply = (r: typeof rec) =>
      ctx.kernel.inNetns(
        rec.netnsPath,
        (s) =>
          applyNicPolicy(s.conn, {
            veth: rec.ifName,
            tap: rec.tap,
            // Quiesced on a dhcp network: nothing toward the TAP (dhcp.ts).
            policy: tapPolicyFor(r, r.state === "quiesced"),
          }),
      );
    /** The kernel back to what the record says, after `err`. */
    const putBack = (err: unknown): never => {
      try {
        apply(rec);
      } catch (undo) {
        throw new OperationError(
          op,
          object,
          `${reasonOf(err)}; putting the recorded policy back failed too ` +
            `(${reasonOf(undo)}): run \`vmnic recover ${vmId}\``,
          err,
        );
      }
      throw err;
    };
    let applied: ReturnType<typeof apply>;
    try {
      // One direction, or the rates, may be in when a later step fails.
      applied = apply(updated);
    } catch (e) {
      return putBack(e);
    }
    try {
      ctx.store.updateNic(updated);
    } catch (e) {
      return putBack(e);
    }
    return {
      vmId,
      index,
      changed: applied.changed,
      actions: applied.actions,
      asked: spec,
      policy: next.effective,
    };
  }, { index });
}
