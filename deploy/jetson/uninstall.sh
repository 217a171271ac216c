#!/bin/sh
# Removes the edgeagent service that install.sh installed.
#
#   sudo deploy/jetson/uninstall.sh [--root DIR] [--purge]
#
# Stops and disables the service, removes the binary, the unit, install.sh's
# drop-in and the documentation. Kept unless --purge: the flow and its
# directory /etc/edgeagent, the data directory /var/lib/edgeagent (the
# repository with the queued flowfiles and provenance, processor state, the
# TensorRT engine cache), drop-ins of your own (systemctl edit), and the user
# and group edgeagent. --purge removes those too. The groups video, render,
# i2c and gpio are never removed.
#
#   --root DIR   uninstall from DIR instead of / (see install.sh --root);
#                DESTDIR=DIR does the same
#   --purge      also remove configuration, data, drop-ins, user and group
set -eu

prog=$(basename "$0")
root=${DESTDIR:-}
purge=no

die() { echo "$prog: $*" >&2; exit 1; }
say() { echo "$prog: $*"; }

while [ $# -gt 0 ]; do
	case $1 in
	--root) [ $# -ge 2 ] || die "--root needs a directory"; root=$2; shift 2 ;;
	--root=*) root=${1#--root=}; shift ;;
	--purge) purge=yes; shift ;;
	-h|--help) sed -n '2,/^set -eu/{/^set -eu/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done

if [ -n "$root" ]; then
	[ -d "$root" ] || die "--root $root: no such directory"
	root=$(cd "$root" && pwd)
	[ "$root" != / ] || root=
fi
if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
	die "uninstalling from / needs root: sudo $0 $*"
fi

unitdir=$root/etc/systemd/system
dropin=$unitdir/edgeagent.service.d
confdir=$root/etc/edgeagent
statedir=$root/var/lib/edgeagent

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
	# Stopping drains the flow: queued flowfiles stay in the repository.
	systemctl disable --now edgeagent.service 2>/dev/null || true
elif command -v systemctl >/dev/null 2>&1 && [ -f "$unitdir/edgeagent.service" ]; then
	systemctl --root="${root:-/}" disable edgeagent.service 2>/dev/null || true
fi
rm -f "$unitdir/multi-user.target.wants/edgeagent.service"

rm -f "$root/usr/local/bin/edgeagent" "$unitdir/edgeagent.service" "$dropin/onnxruntime.conf"
rm -rf "$root/usr/local/share/doc/edgeagent"
say "removed the binary, the unit and the documentation"

if [ "$purge" = yes ]; then
	rm -rf "$dropin" "$confdir" "$statedir" "$root/var/lib/private/edgeagent"
	if [ -n "$root" ]; then
		for f in passwd shadow group gshadow; do
			if [ -f "$root/etc/$f" ]; then sed -i '/^edgeagent:/d' "$root/etc/$f"; fi
		done
	else
		if getent passwd edgeagent >/dev/null; then userdel edgeagent; fi
		if getent group edgeagent >/dev/null; then groupdel edgeagent; fi
	fi
	say "purged $confdir, $statedir, the drop-ins and the user and group edgeagent"
else
	rmdir "$dropin" 2>/dev/null || true
	if [ -d "$dropin" ]; then say "kept your drop-ins in $dropin"; fi
	if [ -d "$confdir" ]; then say "kept the flow in $confdir"; fi
	if [ -d "$statedir" ]; then say "kept the data in $statedir (queued flowfiles, provenance, engine caches)"; fi
	say "the user and group edgeagent are kept; --purge removes them and the kept files"
fi

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	systemctl reset-failed edgeagent.service 2>/dev/null || true
fi
exit 0
