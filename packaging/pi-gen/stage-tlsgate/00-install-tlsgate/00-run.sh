#!/bin/bash -e
# Installs the tlsgate package from files/ (copy tlsgate_*_arm64.deb or
# tlsgate_*_armhf.deb there, see ../../README.md) with apt, so its library
# dependencies come from the image's archive; then drops the site
# configuration and makes sure the service is enabled.  pi-gen runs this on
# the build host with ROOTFS_DIR set; on_chroot runs commands in the image.

debs=(files/tlsgate_*.deb)
if [ ! -e "${debs[0]}" ] || [ "${#debs[@]}" -ne 1 ]; then
	echo "stage-tlsgate: put exactly one tlsgate_*.deb in $(pwd)/files" >&2
	exit 1
fi
install -m 0644 "${debs[0]}" "${ROOTFS_DIR}/tmp/tlsgate.deb"
on_chroot <<'CHROOT'
apt-get install -y --no-install-recommends ca-certificates /tmp/tlsgate.deb
rm -f /tmp/tlsgate.deb
CHROOT

# The site configuration replaces the example conffile; dpkg keeps it on
# upgrades (it asks, or keeps it with --force-confold).
if [ -f files/tlsgate.conf ]; then
	install -m 0644 files/tlsgate.conf "${ROOTFS_DIR}/etc/tlsgate/tlsgate.conf"
fi
on_chroot <<'CHROOT'
tlsgate -t -c /etc/tlsgate/tlsgate.conf
systemctl enable tlsgate.service
CHROOT
