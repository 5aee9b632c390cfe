/**
 * The networks a provider can put NICs on: the conflists of the conf dir
 * (loaded once per provider) or, when there is none, the embedded network.
 *
 * @module
 */
import {
  loadConfDir,
  type NetworkConfigList,
  type NetworkConfigSet,
  parseConfList,
} from "../cni/config.ts";
import { EMBEDDED_NETWORK_NAME, embeddedConflist } from "./default_network.ts";
import { InvalidInputError, OperationError } from "./errors.ts";
import {
  type ChainPlugin,
  networkDetails,
  type NetworkStatus,
} from "./cni_verbs.ts";

/** A network the provider can use, as `vmnic networks` lists it. */
export interface NetworkInfo {
  /** Its name. */
  name: string;
  /** The conflist file, or `"embedded"`. */
  source: string;
  /** True for the embedded default network. */
  embedded: boolean;
  /** The one used when neither spec nor VM config names a network. */
  isDefault: boolean;
  /** The list's CNI version. */
  cniVersion: string;
  /** Plugin types, in ADD order. */
  plugins: string[];
  /** Subnets its IPAM hands addresses from. */
  subnets: string[];
  /** Gateways its IPAM names. */
  gateways: string[];
  /** The MTU a plugin sets, when one does. */
  mtu?: number;
  /** The chain: each plugin's type, declared capabilities and IPAM. */
  chain: ChainPlugin[];
  /**
   * CNI STATUS (1.1): `ok`, `not-ready` (see `statusError`), or `skipped`
   * for a chain below 1.1.
   */
  status?: NetworkStatus["status"];
  /** Why STATUS says it is not ready. */
  statusError?: string;
}

/** Networks, and conflist files that could not be loaded. */
export interface NetworksReport {
  /** Usable networks; the default first. */
  networks: NetworkInfo[];
  /** Files that failed, with why. */
  errors: { source: string; error: string }[];
}

/** The conflists of one conf dir, loaded on first use. */
export class Networks {
  readonly #confDir: string;
  #set?: Promise<NetworkConfigSet>;

  /** Networks of `confDir`. */
  constructor(confDir: string) {
    this.#confDir = confDir;
  }

  /** Forgets what was loaded: the next use reads the conf dir again. */
  reload(): void {
    this.#set = undefined;
  }

  /** The loaded conflists. */
  load(): Promise<NetworkConfigSet> {
    if (!this.#set) {
      this.#set = loadConfDir(this.#confDir);
      this.#set.catch(() => this.#set = undefined);
    }
    return this.#set;
  }

  /** The embedded network's conflist. */
  embedded(): NetworkConfigList {
    return parseConfList(embeddedConflist(), "embedded");
  }

  /** The conflists loaded (or the embedded network), and the broken files. */
  async report(): Promise<NetworksReport> {
    const set = await this.load();
    const lists = set.networks.length ? set.networks : [this.embedded()];
    // With every conflist broken, nothing is default: `add` refuses to fall
    // back to the embedded network unless it is named.
    // Nor when a broken file sorts before the first usable one.
    const hasDefault = set.networks.length > 0
      ? brokenBeforeDefault(set).length === 0
      : set.errors.length === 0;
    return {
      networks: lists.map((n, i) => ({
        name: n.name,
        source: n.source,
        embedded: n.source === "embedded",
        isDefault: i === 0 && hasDefault,
        cniVersion: n.cniVersion,
        plugins: n.plugins.map((p) => p.type),
        ...networkDetails(n),
      })),
      errors: set.errors.map((e) => ({ source: e.source, error: e.message })),
    };
  }

  /**
   * The network called `name`, or the default one. Unknown names are bad
   * input; broken conflists never make vmnic fall back to another network.
   */
  async resolve(
    op: string,
    object: string,
    name?: string,
  ): Promise<NetworkConfigList> {
    const set = await this.load();
    if (!set.networks.length) {
      if (name === EMBEDDED_NETWORK_NAME) return this.embedded();
      if (name === undefined && set.errors.length) {
        throw new OperationError(
          op,
          object,
          `no usable network in ${this.#confDir}${brokenNote(set)}`,
        );
      }
      if (name === undefined) return this.embedded();
      throw new InvalidInputError(
        op,
        object,
        `unknown network ${JSON.stringify(name)}: no conflist in ` +
          `${this.#confDir}; known: ${EMBEDDED_NETWORK_NAME} (embedded)` +
          brokenNote(set),
      );
    }
    if (name === undefined) {
      const shadowing = brokenBeforeDefault(set);
      if (shadowing.length) {
        // The broken file would have been the default: falling through to
        // the next one would put the VM on a network nobody chose.
        throw new OperationError(
          op,
          object,
          `no default network: ${shadowing[0].source} sorts first and could ` +
            `not be loaded (${shadowing[0].reason}); fix it or name the ` +
            `network`,
        );
      }
      return set.defaultNetwork!;
    }
    const found = set.findNetwork(name);
    if (!found) {
      throw new InvalidInputError(
        op,
        object,
        `unknown network ${JSON.stringify(name)}; known: ` +
          set.networks.map((n) => n.name).join(", ") + brokenNote(set),
      );
    }
    return found;
  }

  /** The network called `name` as configured now, or null (never throws). */
  async current(name: string): Promise<NetworkConfigList | null> {
    try {
      const set = await this.load();
      if (!set.networks.length && name === EMBEDDED_NETWORK_NAME) {
        return this.embedded();
      }
      return set.findNetwork(name) ?? null;
    } catch {
      return null;
    }
  }
}

/** Broken conflist files that sort before the default network's file. */
function brokenBeforeDefault(set: NetworkConfigSet) {
  const first = set.defaultNetwork?.source;
  if (first === undefined) return [];
  return set.errors.filter((e) => e.source < first);
}

function brokenNote(set: NetworkConfigSet): string {
  return set.errors.length
    ? ` (${set.errors.length} conflist file(s) could not be loaded: ${
      set.errors.map((e) => e.message).join("; ")
    })`
    : "";
}
