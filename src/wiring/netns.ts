/**
 * The per-VM namespace operations the provider uses: the kernel layer's
 * named netns handling, and running a step inside a VM's netns with one
 * netlink socket for the whole step (DESIGN.md: enter, synchronous work
 * only, switch back). The provider reaches the kernel only through here.
 *
 * @module
 */
import { withNetns } from "../kernel/netns.ts";
import { NetlinkSocket } from "../netlink/socket.ts";

export {
  DEFAULT_NETNS_DIR,
  deleteNetns,
  ensureNetns,
  listNetns,
  netnsDirPropagates,
  netnsExists,
  netnsPath,
} from "../kernel/netns.ts";
export { checkTunDevice } from "../kernel/tuntap.ts";
export { InvalidArgumentError, KernelError } from "../sys/errors.ts";

/**
 * Runs `fn` inside the netns at `path` with a netlink socket opened there.
 * The thread itself must be in the netns too: TAP creation is an ioctl on
 * `/dev/net/tun`, which makes the device in the caller's netns.
 */
export function inNetns<T>(path: string, fn: (sock: NetlinkSocket) => T): T {
  return withNetns(path, () => {
    const sock = NetlinkSocket.open();
    try {
      return fn(sock);
    } finally {
      sock.close();
    }
  });
}
