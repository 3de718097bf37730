#!/bin/sh
# build-test-guest.sh OUTDIR
#
# Builds the VM test guest used by the qemu runtime tests and the end-to-end
# tests, without downloading any disk image: the Debian kernel package
# (linux-image-6.1.*-amd64, fetched with apt-get download) and a busybox-static
# initramfs. Results in OUTDIR:
#
#   vmlinuz      the kernel (boot with console=ttyS0)
#   initrd.img   the initramfs (busybox + /init + the modules it loads)
#   base.raw     a 16 MiB ext4 image holding persys-base.txt, usable as a
#                pool's base image (qcow2 overlay path)
#   VERSION      the kernel version the guest was built from
#
# Idempotent and cached: when OUTDIR already holds a guest built by this
# version of the script, it exits at once.
#
# What the guest's /init does, in order, printing "persys-guest:" lines on the
# serial console (ttyS0):
#   - loads ata_piix sr_mod isofs virtio_pci virtio_blk virtio_net
#     virtio_console ext4 button evdev (and their dependencies);
#   - finds the NoCloud seed (LABEL=cidata), mounts it and prints
#     "persys-guest: cidata found on DEV", then the whole user-data (password
#     values redacted) between
#     "persys-guest: user-data begin" and "persys-guest: user-data end", and
#     meta-data the same way;
#   - lists the block devices ("persys-guest: disks: ..."), mounts /dev/vda
#     read-only when it holds ext4 and prints its persys-base.txt;
#   - brings eth0 up with udhcpc (QEMU user networking) and prints
#     "persys-guest: eth0 address A.B.C.D/NN";
#   - serves /www (index.html = "persys-guest ok") with busybox httpd on
#     port 80;
#   - runs acpid with a power-button handler that powers off
#     ("persys-guest: power button, powering off");
#   - prints "persys-guest: ready" and stays up.
set -eu

if [ $# -ne 1 ] || [ -z "$1" ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
OUT=$1
# Bump when the guest's content changes, so cached guests are rebuilt.
GUEST_REV=6

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initrd.img" ] && [ -f "$OUT/base.raw" ] &&
	[ "$(cat "$OUT/.guest-rev" 2>/dev/null || true)" = "$GUEST_REV" ]; then
	exit 0
fi

for tool in apt-get apt-cache dpkg-deb depmod modprobe busybox gzip; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "build-test-guest: $tool is missing (install kmod, busybox-static, apt)" >&2
		exit 1
	fi
done
BUSYBOX=$(command -v busybox)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/persys-guest.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM

# --- kernel package -------------------------------------------------------
candidates() {
	apt-cache pkgnames linux-image-6.1.0- 2>/dev/null |
		grep -E '^linux-image-6\.1\.0-[0-9]+-amd64$' | sort -V -r
}
download() {
	for pkg in $(candidates); do
		if (cd "$WORK" && apt-get download -qq "$pkg" >/dev/null 2>&1); then
			echo "$pkg"
			return 0
		fi
	done
	return 1
}
if ! PKG=$(download); then
	apt-get update -qq >/dev/null 2>&1 || true
	if ! PKG=$(download); then
		echo "build-test-guest: could not apt-get download any linux-image-6.1.0-*-amd64 package" >&2
		exit 1
	fi
fi
DEB=$(ls "$WORK"/"$PKG"_*.deb | head -1)
mkdir -p "$WORK/kernel"
dpkg-deb -x "$DEB" "$WORK/kernel"
VMLINUZ=$(ls "$WORK"/kernel/boot/vmlinuz-* | head -1)
KVER=${VMLINUZ##*/vmlinuz-}
KROOT=$WORK/kernel
# Debian bookworm ships /lib/modules; newer trees may use /usr/lib/modules.
if [ ! -d "$KROOT/lib/modules/$KVER" ] && [ -d "$KROOT/usr/lib/modules/$KVER" ]; then
	mkdir -p "$KROOT/lib/modules"
	mv "$KROOT/usr/lib/modules/$KVER" "$KROOT/lib/modules/$KVER"
fi
depmod -b "$KROOT" "$KVER"

# --- initramfs ---------------------------------------------------------------
IR=$WORK/initramfs
mkdir -p "$IR/bin" "$IR/sbin" "$IR/usr/bin" "$IR/usr/sbin" "$IR/etc/acpi/PWRF" \
	"$IR/proc" "$IR/sys" "$IR/dev" "$IR/run" "$IR/tmp" "$IR/var/log" "$IR/var/run" "$IR/mnt/cidata" "$IR/mnt/vda" \
	"$IR/www" "$IR/lib/modules/$KVER"
cp "$BUSYBOX" "$IR/bin/busybox"

MODULES="ata_piix sr_mod isofs virtio_pci virtio_blk virtio_net virtio_console ext4 crc32c_generic button evdev"
for m in $MODULES; do
	modprobe -d "$KROOT" -S "$KVER" --show-depends "$m" 2>/dev/null |
		awk '$1 == "insmod" { print $2 }'
done | sort -u >"$WORK/modlist"
if [ ! -s "$WORK/modlist" ]; then
	echo "build-test-guest: no modules resolved for $KVER" >&2
	exit 1
fi
while read -r ko; do
	rel=${ko#"$KROOT"/lib/modules/"$KVER"/}
	mkdir -p "$IR/lib/modules/$KVER/$(dirname "$rel")"
	cp "$ko" "$IR/lib/modules/$KVER/$rel"
done <"$WORK/modlist"
cp "$KROOT/lib/modules/$KVER/modules.builtin" "$KROOT/lib/modules/$KVER/modules.order" \
	"$IR/lib/modules/$KVER/" 2>/dev/null || true
depmod -b "$IR" "$KVER"

echo "persys-guest ok" >"$IR/www/index.html"

cat >"$IR/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
echo "persys-guest: power button, powering off" >/dev/console
sync
umount -a -r 2>/dev/null
poweroff -f
EOF
chmod 755 "$IR/etc/acpi/PWRF/00000080"

cat >"$IR/etc/udhcpc.script" <<'EOF'
#!/bin/sh
case "$1" in
deconfig)
	ip addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	if [ -n "${router:-}" ]; then
		ip route add default via "${router%% *}" dev "$interface"
	fi
	;;
esac
exit 0
EOF
chmod 755 "$IR/etc/udhcpc.script"

cat >"$IR/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
echo "persys-guest: init started ($(uname -r))"
for m in ata_piix sr_mod isofs virtio_pci virtio_blk virtio_net virtio_console ext4 button evdev; do
	modprobe "$m" 2>/dev/null || echo "persys-guest: module $m failed"
done

dev=""
i=0
while [ $i -lt 100 ]; do
	dev=$(findfs LABEL=cidata 2>/dev/null) && [ -n "$dev" ] && break
	dev=""
	i=$((i + 1))
	sleep 0.1
done
if [ -n "$dev" ] && mount -t iso9660 -o ro "$dev" /mnt/cidata; then
	echo "persys-guest: cidata found on $dev"
	echo "persys-guest: user-data begin"
	# Password lines are redacted: the console is readable through the API.
	sed -e 's/\(passwd[^:]*:\).*/\1 [redacted]/' /mnt/cidata/user-data 2>/dev/null
	echo
	echo "persys-guest: user-data end"
	echo "persys-guest: meta-data begin"
	cat /mnt/cidata/meta-data 2>/dev/null
	echo
	echo "persys-guest: meta-data end"
else
	echo "persys-guest: no cidata"
fi

disks=$(awk 'NR > 2 { print $4 }' /proc/partitions | tr '\n' ' ')
echo "persys-guest: disks: $disks"
if [ -b /dev/vda ] && mount -t ext4 -o ro /dev/vda /mnt/vda 2>/dev/null; then
	echo "persys-guest: vda says $(cat /mnt/vda/persys-base.txt 2>/dev/null)"
fi

ip link set lo up
if ip link set eth0 up 2>/dev/null; then
	udhcpc -i eth0 -s /etc/udhcpc.script -q -n -t 10 -T 1 >/dev/null 2>&1
	addr=$(ip -4 -o addr show dev eth0 | awk '{ print $4 }' | head -1)
	echo "persys-guest: eth0 address ${addr:-none}"
else
	echo "persys-guest: no eth0"
fi
httpd -p 80 -h /www

acpid -f -c /etc/acpi &
apid=$!
# "ready" promises that the power button works: wait until acpid has
# opened the input devices.
i=0
while [ $i -lt 100 ]; do
	ls -l /proc/$apid/fd 2>/dev/null | grep -q /dev/input/event && break
	i=$((i + 1))
	sleep 0.1
done
echo "persys-guest: ready"
while true; do
	sleep 3600
done
EOF
chmod 755 "$IR/init"

(cd "$IR" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -9) >"$WORK/initrd.img"

# --- base disk image ---------------------------------------------------------
mkdir -p "$WORK/basefs"
echo "persys base image" >"$WORK/basefs/persys-base.txt"
truncate -s 16M "$WORK/base.raw"
if command -v mkfs.ext4 >/dev/null 2>&1; then
	mkfs.ext4 -q -F -L persysbase -d "$WORK/basefs" "$WORK/base.raw" >/dev/null
fi

cp "$VMLINUZ" "$OUT/vmlinuz.tmp" && mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
cp "$WORK/initrd.img" "$OUT/initrd.img.tmp" && mv "$OUT/initrd.img.tmp" "$OUT/initrd.img"
cp --sparse=always "$WORK/base.raw" "$OUT/base.raw.tmp" && mv "$OUT/base.raw.tmp" "$OUT/base.raw"
echo "$KVER" >"$OUT/VERSION"
echo "$GUEST_REV" >"$OUT/.guest-rev"
echo "build-test-guest: guest for $KVER in $OUT"
