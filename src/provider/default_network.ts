/**
 * The embedded network that serves when no conflist exists, so a fresh host
 * works: a `vmnic0` bridge with host-local IPAM on 10.77.0.0/16, clear of
 * podman's 10.88.0.0/16 (and its 10.89.x networks) and docker's
 * 172.17.0.0/16 and 192.168.x pools. No masquerading: the host reaches its
 * VMs; routing them further is the operator's choice, in a conflist.
 *
 * @module
 */

/** Name of the embedded network. */
export const EMBEDDED_NETWORK_NAME = "vmnic";
/** Its bridge. */
export const EMBEDDED_BRIDGE = "vmnic0";
/** Its subnet. */
export const EMBEDDED_SUBNET = "10.77.0.0/16";

/**
 * The embedded conflist text. host-local keeps its leases where it does by
 * default (`/var/lib/cni/networks/vmnic`): every install on the host that
 * uses the embedded network shares its bridge and subnet, so they must
 * share its leases too, or two of them would hand out one address.
 */
export function embeddedConflist(): string {
  return JSON.stringify({
    cniVersion: "1.0.0",
    name: EMBEDDED_NETWORK_NAME,
    plugins: [{
      type: "bridge",
      bridge: EMBEDDED_BRIDGE,
      isGateway: true,
      ipMasq: false,
      capabilities: { ips: true },
      ipam: {
        type: "host-local",
        ranges: [[{ subnet: EMBEDDED_SUBNET }]],
        routes: [{ dst: "0.0.0.0/0" }],
      },
    }],
  });
}
