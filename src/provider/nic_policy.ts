/**
 * A NIC's policy and capability args through the operations: what an add
 * spec asks for (checked before anything changes), what a new NIC gets
 * (the call's fields, then the network's defaults in the policy file, then
 * the built-in ones), whether a retried add contradicts a NIC's, and the
 * capability args a plugin run gets.
 *
 * @module
 */
import type { NicRecord } from "../store/types.ts";
import { type CapabilityArgs, checkCapabilityArgs } from "./capabilities.ts";
import type { ProviderContext } from "./context.ts";
import { ConflictError, InvalidInputError } from "./errors.ts";
import {
  hasPolicyFields,
  loadPolicyFile,
  networkDefaults,
  type NicPolicy,
  type NormalizedSpec,
  normalizeSpec,
  type PolicyFile,
  policyOf,
  type PolicyRecord,
  resolvePolicy,
} from "./policy.ts";
import type { AddSpec } from "./types.ts";

/** What an add spec asks for besides the NIC itself. */
export interface AskedPolicy {
  /** Its policy fields, checked. */
  spec: NormalizedSpec;
  /** Its capability args, checked; undefined for none. */
  capabilityArgs?: CapabilityArgs;
}

/**
 * The policy fields and capability args of an add spec, checked (bad
 * input is an `InvalidInputError` naming the field and what is allowed).
 */
export function askedPolicy(
  op: string,
  object: string,
  spec: AddSpec,
): AskedPolicy {
  if (spec.guest && spec.policy !== undefined) {
    throw new InvalidInputError(
      op,
      object,
      "a clone NIC (guest identity) takes no policy: policies apply to the " +
        "TAP path's redirects (docs/policy.md)",
    );
  }
  const asked: AskedPolicy = {
    spec: spec.policy === undefined
      ? {}
      : normalizeSpec(op, object, spec.policy, (f) =>
        f ? `policy.${f}` : "policy"),
  };
  const caps = checkCapabilityArgs(op, object, spec);
  if (caps) asked.capabilityArgs = caps;
  return asked;
}

/** The policy file of the provider's settings (missing: no defaults). */
export function policyFileOf(
  ctx: ProviderContext,
  op: string,
): PolicyFile {
  return loadPolicyFile(op, ctx.config.policyFile);
}

/** What a new NIC on `network` records: its policy and capability args. */
export function planNicPolicy(
  file: PolicyFile,
  network: string,
  asked: AskedPolicy = { spec: {} },
): {
  policy: PolicyRecord;
  capabilityArgs?: CapabilityArgs;
  policyAsked: boolean;
} {
  return {
    policy: {
      spec: asked.spec,
      effective: resolvePolicy(asked.spec, networkDefaults(file, network)),
    },
    ...(asked.capabilityArgs ? { capabilityArgs: asked.capabilityArgs } : {}),
    policyAsked: hasPolicyFields(asked.spec) || !!asked.capabilityArgs,
  };
}

/**
 * A retried add that asks for a policy or capability args must ask for
 * the NIC's: another one is a conflict (`vmnic policy` changes a policy).
 */
export function checkSamePolicy(
  op: string,
  object: string,
  have: NicRecord,
  asked: AskedPolicy,
  file: PolicyFile,
): void {
  if (hasPolicyFields(asked.spec)) {
    const want = resolvePolicy(asked.spec, networkDefaults(file, have.network));
    const got = policyOf(have)?.effective ?? null;
    if (JSON.stringify(want) !== JSON.stringify(got)) {
      throw new ConflictError(
        op,
        object,
        `NIC ${have.index} exists with another policy (${
          JSON.stringify(got)
        }): \`vmnic policy ${have.vmId} ${have.index} …\` changes it in place`,
      );
    }
  }
  if (
    asked.capabilityArgs &&
    JSON.stringify(asked.capabilityArgs) !==
      JSON.stringify(have.capabilityArgs ?? null)
  ) {
    throw new ConflictError(
      op,
      object,
      `NIC ${have.index} exists with other capability args (${
        JSON.stringify(have.capabilityArgs ?? {})
      }): remove it first to add it anew`,
    );
  }
}

/**
 * The CNI args of a plugin run: what IPAM is asked (`ips`, `mac`) plus the
 * NIC's recorded capability args.
 */
export function withCapabilityArgs<
  T extends { capabilityArgs?: Record<string, unknown> },
>(
  request: T,
  caps: Record<string, unknown> | null | undefined,
): T {
  if (!caps || !Object.keys(caps).length) return request;
  return {
    ...request,
    capabilityArgs: { ...caps, ...(request.capabilityArgs ?? {}) },
  };
}

/** A policy or capability args as the record's JSON object. */
export function asRecord(
  v: PolicyRecord | CapabilityArgs,
): Record<string, unknown> {
  return v as unknown as Record<string, unknown>;
}

/** The policy in effect and the capability args of a NIC's config JSON. */
export function policyFields(
  rec: NicRecord,
): { policy?: NicPolicy; capabilityArgs?: CapabilityArgs } {
  // A clone NIC's routed path has no redirects to carry a policy.
  const p = rec.guest ? null : policyOf(rec);
  return {
    ...(p ? { policy: p.effective } : {}),
    ...(rec.capabilityArgs && Object.keys(rec.capabilityArgs).length
      ? { capabilityArgs: rec.capabilityArgs as CapabilityArgs }
      : {}),
  };
}
