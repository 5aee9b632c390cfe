/**
 * A small GC orchestrator (the seed's `gc.Orchestrator`): a VM manager
 * registers the GC modules of its parts (network, disks, …); one run takes
 * every module's snapshot first, then lets each collect what is not in the
 * caller's active set.
 *
 * @module
 */

/** How a collection runs. */
export interface GcPlan {
  /** List the candidates without touching anything. */
  dryRun?: boolean;
  /** Called after each collected (or failed) candidate. */
  onProgress?: (id: string, done: number, total: number) => void;
}

/** What one module did in a run. */
export interface GcReport {
  /** The module's name. */
  module: string;
  /** Ids not in the active set: collected unless `dryRun`. */
  candidates: string[];
  /** Ids collected. */
  collected: string[];
  /** Left alone, with why (e.g. locked by another process). */
  skipped: { id: string; reason: string }[];
  /** Ids that failed, with why. */
  errors: { id: string; error: string }[];
  /** Collected ids with something to report (e.g. a failed `afterRemove` hook). */
  warnings: { id: string; warning: string }[];
}

/**
 * One GC participant. `snapshot` reads what exists; `collect` removes what
 * the snapshot holds that is not active.
 */
export interface GcModule<S> {
  /** Its name. */
  readonly name: string;
  /** Reads what exists. */
  snapshot(): Promise<S>;
  /** Removes what `snapshot` holds that is not active. */
  collect(
    snapshot: S,
    active: ReadonlySet<string>,
    plan: GcPlan,
  ): Promise<GcReport>;
}

/** Runs registered GC modules together. */
export class GcOrchestrator {
  // deno-lint-ignore no-explicit-any
  readonly #modules: GcModule<any>[] = [];

  /** Adds a module; names must be unique. */
  register<S>(module: GcModule<S>): void {
    if (this.#modules.some((m) => m.name === module.name)) {
      throw new Error(
        `gc: a module named ${
          JSON.stringify(module.name)
        } is already registered`,
      );
    }
    this.#modules.push(module);
  }

  /** The registered modules' names, in registration order. */
  get modules(): string[] {
    return this.#modules.map((m) => m.name);
  }

  /**
   * Snapshots every module, then collects. A module whose snapshot or
   * collection throws is reported in its own report; the others still run.
   */
  async run(active: Iterable<string>, plan: GcPlan = {}): Promise<GcReport[]> {
    const activeSet = new Set(active);
    const snaps = await Promise.allSettled(
      this.#modules.map((m) => m.snapshot()),
    );
    const reports: GcReport[] = [];
    for (const [i, m] of this.#modules.entries()) {
      const snap = snaps[i];
      if (snap.status === "rejected") {
        reports.push(failed(m.name, snap.reason));
        continue;
      }
      try {
        reports.push(await m.collect(snap.value, activeSet, plan));
      } catch (e) {
        reports.push(failed(m.name, e));
      }
    }
    return reports;
  }
}

function failed(module: string, e: unknown): GcReport {
  return {
    module,
    candidates: [],
    collected: [],
    skipped: [],
    errors: [{ id: "*", error: e instanceof Error ? e.message : String(e) }],
    warnings: [],
  };
}
