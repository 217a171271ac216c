#!/bin/sh
# Installs (or upgrades) edgeagent as a systemd service on a Jetson or any
# arm64/amd64 Linux machine with systemd. See README.md in this directory.
#
#   sudo deploy/jetson/install.sh [options] [BINARY]
#
# BINARY defaults to bin/edgeagent-linux-arm64 (make build-arm64), looked up
# in the current directory, then in the repository this script belongs to.
#
# Options:
#   --root DIR          install into DIR instead of / (image builds, tests):
#                       users and groups are written to DIR/etc/passwd and
#                       DIR/etc/group, the unit is enabled offline, nothing
#                       is started. DESTDIR=DIR does the same.
#   --no-start          do not (re)start the service now (it is still
#                       enabled, so it starts at the next boot)
#   --onnxruntime PATH  the ONNX Runtime library to use, instead of searching
#   --force             install even if the flow does not validate with the
#                       new binary
#
# What it does, each step idempotent:
#   1. creates the system group and user edgeagent, and the groups video,
#      render, i2c and gpio if missing (the unit's SupplementaryGroups=);
#   2. checks that the new binary accepts the flow that will run (the
#      edited /etc/edgeagent/flow.yaml, else the example);
#   3. installs /usr/local/bin/edgeagent (atomically: a running agent keeps
#      its old binary until restarted), the unit
#      /etc/systemd/system/edgeagent.service and the documentation;
#   4. installs the example flow as /etc/edgeagent/flow.yaml only when there
#      is none; an edited flow is kept and the new example goes next to it as
#      flow.yaml.dist;
#   5. looks for the ONNX Runtime library and records it in the drop-in
#      edgeagent.service.d/onnxruntime.conf (Environment=ONNXRUNTIME_LIB=);
#   6. systemctl daemon-reload, enable and restart (restart skipped with
#      --no-start; only an offline enable with --root or without a running
#      systemd).
set -eu

prog=$(basename "$0")
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

root=${DESTDIR:-}
start=yes
force=no
ort=${ONNXRUNTIME_LIB:-}
binary=

die() { echo "$prog: $*" >&2; exit 1; }
say() { echo "$prog: $*"; }

while [ $# -gt 0 ]; do
	case $1 in
	--root) [ $# -ge 2 ] || die "--root needs a directory"; root=$2; shift 2 ;;
	--root=*) root=${1#--root=}; shift ;;
	--no-start) start=no; shift ;;
	--onnxruntime) [ $# -ge 2 ] || die "--onnxruntime needs a path"; ort=$2; shift 2 ;;
	--onnxruntime=*) ort=${1#--onnxruntime=}; shift ;;
	--force) force=yes; shift ;;
	-h|--help) sed -n '2,/^set -eu/{/^set -eu/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
	-*) die "unknown option $1 (see --help)" ;;
	*) [ -z "$binary" ] || die "only one BINARY may be given"; binary=$1; shift ;;
	esac
done

case $root in *[[:space:]]*) die "--root $root: the path may not contain spaces" ;; esac
if [ -n "$root" ]; then
	mkdir -p "$root"
	root=$(cd "$root" && pwd)
	[ "$root" != / ] || root=
fi
if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
	die "installing into / needs root: sudo $0 $*"
fi

if [ -z "$binary" ]; then
	for b in ./bin/edgeagent-linux-arm64 "$repo/bin/edgeagent-linux-arm64"; do
		if [ -f "$b" ]; then binary=$b; break; fi
	done
	[ -n "$binary" ] || die "no binary given and bin/edgeagent-linux-arm64 not found: run 'make build-arm64' or name the binary"
fi
[ -f "$binary" ] || die "binary $binary not found"
binary=$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")
unit_src=$here/edgeagent.service
flow_src=$here/flow.yaml
for f in "$unit_src" "$flow_src" "$here/README.md"; do
	[ -f "$f" ] || die "$f is missing: run the script from the repository checkout"
done

bindir=$root/usr/local/bin
unitdir=$root/etc/systemd/system
dropin=$unitdir/edgeagent.service.d
confdir=$root/etc/edgeagent
docdir=$root/usr/local/share/doc/edgeagent
statedir=$root/var/lib/edgeagent

# ---- 1. users and groups ----------------------------------------------------

# free_id FILE: the highest unused id below 1000 in the passwd or group
# FILE (what useradd --system picks).
free_id() {
	awk -F: 'BEGIN { for (i = 999; i >= 100; i--) free[i] = 1 }
		{ delete free[$3] }
		END { for (i = 999; i >= 100; i--) if (i in free) { print i; exit } }' "$1"
}

ensure_group() { # NAME
	if [ -n "$root" ]; then
		mkdir -p "$root/etc"
		touch "$root/etc/group"
		grep -q "^$1:" "$root/etc/group" && return 0
		echo "$1:x:$(free_id "$root/etc/group"):" >>"$root/etc/group"
	else
		getent group "$1" >/dev/null && return 0
		groupadd --system "$1"
	fi
	say "created group $1"
}

ensure_user() {
	if [ -n "$root" ]; then
		touch "$root/etc/passwd"
		grep -q '^edgeagent:' "$root/etc/passwd" && return 0
		gid=$(awk -F: '$1 == "edgeagent" { print $3 }' "$root/etc/group")
		uid=$(free_id "$root/etc/passwd")
		echo "edgeagent:x:$uid:$gid:edgeagent edge data agent:/var/lib/edgeagent:/usr/sbin/nologin" >>"$root/etc/passwd"
	else
		getent passwd edgeagent >/dev/null && return 0
		nologin=/usr/sbin/nologin
		[ -x "$nologin" ] || nologin=/bin/false
		useradd --system --gid edgeagent --no-create-home --home-dir /var/lib/edgeagent \
			--shell "$nologin" --comment "edgeagent edge data agent" edgeagent
	fi
	say "created user edgeagent"
}

for g in video render i2c gpio edgeagent; do
	ensure_group "$g"
done
ensure_user

# The numeric gid of edgeagent, for chgrp inside --root (where the host's
# group database does not know the name).
if [ -n "$root" ]; then
	agent_gid=$(awk -F: '$1 == "edgeagent" { print $3 }' "$root/etc/group")
else
	agent_gid=edgeagent
fi
owned() { # FILE...: root:edgeagent where we may chown
	if [ "$(id -u)" -eq 0 ]; then chown "0:$agent_gid" "$@"; fi
}

# ---- 2. check the flow with the new binary ---------------------------------

flow_in_effect=$confdir/flow.yaml
[ -f "$flow_in_effect" ] || flow_in_effect=$flow_src
if version=$("$binary" version 2>/dev/null); then
	say "installing $(echo "$version" | head -n 1)"
	if ! STATE_DIRECTORY=/var/lib/edgeagent "$binary" validate "$flow_in_effect"; then
		if [ "$force" = yes ]; then
			say "warning: $flow_in_effect does not validate with the new binary (--force: installing anyway)"
		else
			die "$flow_in_effect does not validate with the new binary: fix it, or install with --force; nothing was changed"
		fi
	fi
elif [ -n "$root" ]; then
	say "note: $binary does not run here (another architecture?): the flow was not validated"
else
	die "$binary does not run on this machine ($(uname -m)): build it for this architecture"
fi

# ---- 3. binary, unit, documentation -----------------------------------------

install -d -m 0755 "$bindir" "$unitdir" "$docdir"
install -m 0755 "$binary" "$bindir/.edgeagent.new"
mv -f "$bindir/.edgeagent.new" "$bindir/edgeagent"
install -m 0644 "$unit_src" "$unitdir/edgeagent.service"
install -m 0644 "$here/README.md" "$docdir/README.md"
install -m 0644 "$flow_src" "$docdir/flow.yaml.example"
say "installed $bindir/edgeagent and $unitdir/edgeagent.service"

# ---- 4. the flow ------------------------------------------------------------

install -d -m 0755 "$confdir"
if [ ! -e "$confdir/flow.yaml" ]; then
	install -m 0640 "$flow_src" "$confdir/flow.yaml"
	owned "$confdir/flow.yaml"
	say "installed the example flow as $confdir/flow.yaml"
elif cmp -s "$flow_src" "$confdir/flow.yaml"; then
	rm -f "$confdir/flow.yaml.dist"
	say "$confdir/flow.yaml is the current example"
else
	install -m 0640 "$flow_src" "$confdir/flow.yaml.dist"
	owned "$confdir/flow.yaml.dist"
	say "kept the edited $confdir/flow.yaml; the new example is $confdir/flow.yaml.dist"
fi

# ---- 5. ONNX Runtime --------------------------------------------------------

# find_ort: the ONNX Runtime shared library, by search order; within one
# place the highest version. Jetson Zoo / pip wheels, tarballs unpacked
# under /opt or /usr/local, and distribution packages are covered.
find_ort() {
	for pattern in \
		/usr/lib/aarch64-linux-gnu/libonnxruntime.so* \
		/usr/local/lib/libonnxruntime.so* \
		/usr/lib/libonnxruntime.so* \
		/usr/lib/x86_64-linux-gnu/libonnxruntime.so* \
		/opt/nvidia/*/lib/libonnxruntime.so* \
		/opt/nvidia/*/*/lib/libonnxruntime.so* \
		/opt/onnxruntime*/lib/libonnxruntime.so* \
		/usr/local/onnxruntime*/lib/libonnxruntime.so* \
		/usr/local/lib/python3*/dist-packages/onnxruntime/capi/libonnxruntime.so* \
		/usr/lib/python3/dist-packages/onnxruntime/capi/libonnxruntime.so*; do
		# shellcheck disable=SC2086 # the pattern is meant to be expanded
		found=$(for f in $root$pattern; do [ -f "$f" ] && echo "${f#"$root"}"; done | sort -V | tail -n 1)
		if [ -n "$found" ]; then
			echo "$found"
			return 0
		fi
	done
	return 1
}

ort_conf=$dropin/onnxruntime.conf
if [ -n "$ort" ]; then
	[ -f "$root$ort" ] || die "--onnxruntime $ort: no such file"
elif ort=$(find_ort); then
	:
else
	ort=
fi
if [ -n "$ort" ]; then
	install -d -m 0755 "$dropin"
	cat >"$ort_conf.new" <<EOF
# Written by edgeagent's install.sh: the ONNX Runtime library of this machine,
# loaded by the inference processors. Re-run install.sh after an upgrade of
# ONNX Runtime, or set the path with --onnxruntime.
[Service]
Environment=ONNXRUNTIME_LIB=$ort
EOF
	chmod 0644 "$ort_conf.new"
	mv -f "$ort_conf.new" "$ort_conf"
	say "ONNX Runtime: $ort (recorded in $ort_conf)"
else
	if [ -f "$ort_conf" ]; then
		rm -f "$ort_conf"
		rmdir "$dropin" 2>/dev/null || true
	fi
	say "ONNX Runtime: no libonnxruntime.so found; flows with inference processors will not start (see README.md, then re-run with --onnxruntime PATH)"
fi

# ---- 6. systemd -------------------------------------------------------------

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	systemctl enable edgeagent.service
	if [ "$start" = yes ]; then
		systemctl restart edgeagent.service
		say "edgeagent restarted: systemctl status edgeagent; journalctl -u edgeagent -f"
	else
		say "enabled, not started (--no-start): systemctl start edgeagent"
	fi
elif command -v systemctl >/dev/null 2>&1; then
	systemctl --root="${root:-/}" enable edgeagent.service
	say "enabled offline; it starts at the next boot"
else
	say "no systemctl here: enable edgeagent.service by hand"
fi
if [ -d "$statedir" ]; then say "the data in $statedir is kept as it is"; fi
exit 0
