#!/bin/busybox sh
# /init of the vmnic e2e guest (busybox-static + virtio modules, no disk).
# Debian's kernel has no CONFIG_IP_PNP, so this reads the kernel's
# `ip=<addr>::<gw>:<mask>:<host>:<dev>:off` from /proc/cmdline itself.
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

say() { echo "$*" > /dev/console; }

# Modules in dependency order, one file name per line (written by build_guest.ts).
while read -r mod; do
  [ -n "$mod" ] || continue
  insmod "/lib/modules/$mod" || say "VMNIC-GUEST-INSMOD-FAIL $mod"
done < /lib/modules/load-order

spec=""
shell=""
iperf=""
connect=""
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    ip=*) spec="${arg#ip=}" ;;
    vmnic.shell=1) shell=1 ;;
    vmnic.iperf=1) iperf=1 ;;
    vmnic.connect=*) connect="${arg#vmnic.connect=}" ;;
  esac
done
if [ -z "$spec" ]; then
  say "VMNIC-GUEST-FAIL no ip= on the kernel command line"
  exec sh -c 'while true; do sleep 3600; done'
fi
# Empty fields between colons are kept: IFS is not whitespace here.
old_ifs="$IFS"
IFS=:
set -- $spec
IFS="$old_ifs"
addr="$1" gw="$3" mask="$4" host="$5" dev="${6:-eth0}"
[ -n "$host" ] && hostname "$host"

# The NIC may show up a little after the module is loaded.
i=0
while [ ! -e "/sys/class/net/$dev" ] && [ "$i" -lt 100 ]; do
  sleep 0.1
  i=$((i + 1))
done
ip link set lo up
if ! ifconfig "$dev" "$addr" netmask "$mask" up; then
  say "VMNIC-GUEST-FAIL cannot configure $dev"
  exec sh -c 'while true; do sleep 3600; done'
fi
[ -n "$gw" ] && ip route add default via "$gw" dev "$dev"
# Queue pairs the driver runs (virtio-net multi-queue: one per vCPU).
say "VMNIC-GUEST-QUEUES $(ls -d /sys/class/net/"$dev"/queues/rx-* | wc -l)"
say "VMNIC-GUEST-READY $addr"

# bench/guest_datapath.ts: an iperf3 server (in guests built --with-iperf3).
if [ -n "$iperf" ]; then
  if [ -x /bin/iperf3 ] && iperf3 -s -D; then
    say "VMNIC-GUEST-IPERF3 up"
  else
    say "VMNIC-GUEST-IPERF3 fail"
  fi
fi

if [ -n "$gw" ] && ping -c 3 -W 2 "$gw" > /dev/null 2>&1; then
  say "VMNIC-GUEST-GW-PING ok"
else
  say "VMNIC-GUEST-GW-PING fail"
fi

# tests/clone: a TCP connection the guest opens to HOST:PORT, a line with
# its address in it, so the host sees which source address arrives.
if [ -n "$connect" ]; then
  if echo "VMNIC-HELLO $addr" | nc -w 5 "${connect%:*}" "${connect##*:}"; then
    say "VMNIC-GUEST-CONNECT ok"
  else
    say "VMNIC-GUEST-CONNECT fail"
  fi
fi

# Stay up so the host can reach the guest; the host kills QEMU.
[ -n "$shell" ] && exec sh # tests/e2e/policy_test.ts: commands on the console
while true; do sleep 3600; done
