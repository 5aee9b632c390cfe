/**
 * vmnic's CNI runtime, usable on its own (like libcni): load and validate
 * network configuration lists, find and run CNI plugins (ADD, DEL, CHECK,
 * VERSION, STATUS, GC), convert their results to the 1.0 form, and keep
 * what each ADD used so DEL works later.
 *
 * @example
 * ```ts ignore
 * import { CniRuntime, FileAttachmentCache, loadConfDir } from "./mod.ts";
 * const confs = await loadConfDir("/etc/cni/net.d");
 * const net = confs.defaultNetwork!;
 * const cni = new CniRuntime({ cache: new FileAttachmentCache("/var/lib/vmnic/cni") });
 * const rt = { containerId: "vm1", netns: "/var/run/netns/vmnic-vm1", ifName: "eth0" };
 * const result = await cni.addNetworkList(net, rt);
 * await cni.delNetworkList(net, rt);
 * ```
 *
 * @module
 */
export {
  CniCacheError,
  CniConfigError,
  CniError,
  CniExecError,
  type CniExecFailure,
  CniGcError,
  CniInvalidArgumentError,
  CniPluginError,
  CniPluginNotFoundError,
  CniResultError,
  CniVersionError,
} from "./errors.ts";
export {
  CONFIG_EXTENSIONS,
  loadConfDir,
  loadConfFile,
  MAX_CONFIG_BYTES,
  MAX_CONFIG_DEPTH,
  type NetworkConfigList,
  NetworkConfigSet,
  parseConf,
  parseConfList,
  type PluginConfig,
} from "./config.ts";
export {
  binaryPluginExec,
  DEFAULT_BIN_DIRS,
  DEFAULT_TIMEOUT_MS,
  execPlugin,
  findPlugin,
  MAX_PLUGIN_OUTPUT_BYTES,
  type PluginExec,
  type PluginExecRequest,
} from "./exec.ts";
export {
  type CniDns,
  type CniInterface,
  type CniIpConfig,
  type CniResult,
  type CniRoute,
  parseCidr,
  type ParsedCidr,
  resultForVersion,
  toCniResult,
} from "./result.ts";
export {
  type AttachmentCache,
  type AttachmentKey,
  type CachedAttachment,
  FileAttachmentCache,
} from "./cache.ts";
export {
  CniRuntime,
  type CniRuntimeOptions,
  formatCniArgs,
  type GcAttachment,
  type GcOutcome,
  ipamTypeOf,
  type PluginVersionCache,
  type PluginVersionInfo,
  type RuntimeConf,
} from "./runtime.ts";
export {
  compareCniVersions,
  isCniVersion,
  SUPPORTED_CNI_VERSIONS,
  versionAtLeast,
} from "./version.ts";
