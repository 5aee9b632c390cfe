/**
 * `GET /metrics` of `vmnic serve`: Prometheus text format (version 0.0.4),
 * from the events the daemon's provider records (operations, phases,
 * plugin and hook failures, watcher reactions) and, at each scrape, the
 * records (NICs by state, VMs) and the warm pool (docs/events.md).
 *
 * @module
 */
import type { EventDetail } from "../provider/context.ts";
import type { CniProvider } from "../provider/provider.ts";
import type { EventRecord } from "../store/events.ts";
import { VERSION } from "../version.ts";

/** Histogram buckets, in seconds: 1 ms to 60 s. */
const BUCKETS = [
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
];

/** The content type Prometheus asks for. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

class Histogram {
  readonly counts = new Array<number>(BUCKETS.length).fill(0);
  sum = 0;
  count = 0;
  observe(seconds: number): void {
    this.sum += seconds;
    this.count++;
    for (let i = 0; i < BUCKETS.length; i++) {
      if (seconds <= BUCKETS[i]) this.counts[i]++;
    }
  }
}

/** Counters and histograms fed by events; gauges read at each scrape. */
export class Metrics {
  readonly #ops = new Map<string, number>();
  readonly #opDurations = new Map<string, Histogram>();
  readonly #phaseDurations = new Map<string, Histogram>();
  readonly #pluginFailures = new Map<string, number>();
  readonly #hookFailures = new Map<string, number>();
  readonly #watcher = new Map<string, number>();
  readonly #provider: CniProvider;
  readonly #stop: () => void;

  /** Metrics of `provider`'s events from now on. */
  constructor(provider: CniProvider) {
    this.#provider = provider;
    this.#stop = provider.onEvent((e, d) => this.observe(e, d));
  }

  /** Stops listening. */
  close(): void {
    this.#stop();
  }

  /** Counts one event. */
  observe(e: EventRecord, detail: EventDetail): void {
    bump(this.#ops, labels({ op: e.op, outcome: e.outcome }));
    histogram(this.#opDurations, labels({ op: e.op })).observe(
      e.durationMs / 1000,
    );
    for (const p of e.phases) {
      // Per-hook and per-plugin phases keep their names: both sets are
      // bounded by the host's configuration.
      histogram(this.#phaseDurations, labels({ phase: p.name })).observe(
        p.ms / 1000,
      );
    }
    for (const plugin of detail.failedPlugins) {
      bump(this.#pluginFailures, labels({ plugin }));
    }
    for (const hook of detail.failedHooks) {
      bump(this.#hookFailures, labels({ hook }));
    }
    if (e.op.startsWith("watch:")) {
      bump(
        this.#watcher,
        labels({ reaction: e.op.slice("watch:".length), outcome: e.outcome }),
      );
    }
  }

  /** The exposition text. */
  async render(): Promise<string> {
    const out: string[] = [];
    const family = (
      name: string,
      type: string,
      help: string,
      lines: string[],
    ) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...lines);
    };
    family("vmnic_build_info", "gauge", "vmnic's version", [
      `vmnic_build_info${labels({ version: VERSION })} 1`,
    ]);
    family(
      "vmnic_operations_total",
      "counter",
      "Operations by kind and outcome",
      counterLines("vmnic_operations_total", this.#ops),
    );
    family(
      "vmnic_operation_duration_seconds",
      "histogram",
      "Wall time of operations",
      histogramLines("vmnic_operation_duration_seconds", this.#opDurations),
    );
    family(
      "vmnic_phase_duration_seconds",
      "histogram",
      "Time of each phase of an operation (lock, store, netns, netlink, plugin:<type>:<CMD>, hook:<name>:<event>, …)",
      histogramLines("vmnic_phase_duration_seconds", this.#phaseDurations),
    );
    family(
      "vmnic_plugin_failures_total",
      "counter",
      "CNI plugin runs that failed, by plugin type",
      counterLines("vmnic_plugin_failures_total", this.#pluginFailures),
    );
    family(
      "vmnic_hook_failures_total",
      "counter",
      "Hooks that failed or vetoed, by hook",
      counterLines("vmnic_hook_failures_total", this.#hookFailures),
    );
    family(
      "vmnic_watcher_reactions_total",
      "counter",
      "What the watcher did, by reaction and outcome",
      counterLines("vmnic_watcher_reactions_total", this.#watcher),
    );
    const nics = await this.#provider.list().catch(() => []);
    const byState = new Map<string, number>();
    for (
      const s of ["adding", "active", "quiesced", "deleting", "failed"]
    ) byState.set(labels({ state: s }), 0);
    for (const n of nics) bump(byState, labels({ state: n.state }));
    family(
      "vmnic_nics",
      "gauge",
      "NICs in the records, by state (pool slots not counted)",
      gaugeLines("vmnic_nics", byState),
    );
    const vms = await this.#provider.vms().catch(() => []);
    family("vmnic_vms", "gauge", "VMs in the records", [
      `vmnic_vms ${vms.length}`,
    ]);
    const pool = await this.#provider.poolStatus().catch(() => ({ pools: [] }));
    const ready: string[] = [];
    const target: string[] = [];
    const claims: string[] = [];
    const refills: string[] = [];
    const failures: string[] = [];
    for (const p of pool.pools) {
      const l = labels({ network: p.network, queues: String(p.queues) });
      ready.push(`vmnic_pool_slots_ready${l} ${p.ready}`);
      target.push(`vmnic_pool_slots_target${l} ${p.target}`);
      claims.push(`vmnic_pool_claims_total${l} ${p.claimed}`);
      refills.push(`vmnic_pool_refills_total${l} ${p.refills}`);
      failures.push(`vmnic_pool_fill_failures_total${l} ${p.failures}`);
    }
    family("vmnic_pool_slots_ready", "gauge", "Warm slots ready", ready);
    family("vmnic_pool_slots_target", "gauge", "Warm slots wanted", target);
    family("vmnic_pool_claims_total", "counter", "Slots claimed", claims);
    family("vmnic_pool_refills_total", "counter", "Slots made", refills);
    family(
      "vmnic_pool_fill_failures_total",
      "counter",
      "Slot fills that failed",
      failures,
    );
    family(
      "process_resident_memory_bytes",
      "gauge",
      "Resident memory of the daemon",
      [`process_resident_memory_bytes ${Deno.memoryUsage().rss}`],
    );
    return out.join("\n") + "\n";
  }
}

function bump(m: Map<string, number>, key: string, by = 1): void {
  m.set(key, (m.get(key) ?? 0) + by);
}

function histogram(m: Map<string, Histogram>, key: string): Histogram {
  let h = m.get(key);
  if (!h) m.set(key, h = new Histogram());
  return h;
}

/** `{a="x",b="y"}`, values escaped as the format wants. */
function labels(l: Record<string, string>): string {
  const parts = Object.entries(l).map(([k, v]) =>
    `${k}="${
      v.replaceAll("\\", "\\\\").replaceAll("\n", "\\n").replaceAll('"', '\\"')
    }"`
  );
  return parts.length ? `{${parts.join(",")}}` : "";
}

function counterLines(name: string, m: Map<string, number>): string[] {
  return [...m].sort().map(([l, v]) => `${name}${l} ${v}`);
}

function gaugeLines(name: string, m: Map<string, number>): string[] {
  return counterLines(name, m);
}

function histogramLines(name: string, m: Map<string, Histogram>): string[] {
  const out: string[] = [];
  for (const [l, h] of [...m].sort(([a], [b]) => a < b ? -1 : 1)) {
    const inner = l ? l.slice(1, -1) + "," : "";
    for (let i = 0; i < BUCKETS.length; i++) {
      out.push(`${name}_bucket{${inner}le="${BUCKETS[i]}"} ${h.counts[i]}`);
    }
    out.push(`${name}_bucket{${inner}le="+Inf"} ${h.count}`);
    out.push(`${name}_sum${l} ${h.sum}`);
    out.push(`${name}_count${l} ${h.count}`);
  }
  return out;
}
