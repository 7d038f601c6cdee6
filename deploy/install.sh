#!/usr/bin/env bash
# Install tablemover as a systemd service on Debian 12 (README: "Installing as a service").
#
#   make dist                                  # builds dist/tablemover-<version>-py3-none-any.whl
#   sudo deploy/install.sh --move orders       # then fill in the password files it names
#
# What it does; each step is skipped when already done, so running it again (e.g. with a newer
# wheel) is safe and never overwrites a config or password file:
#   - system group and user `tablemover` (no home, no shell)
#   - a virtual environment in /opt/tablemover with the wheel installed (Debian's own pip refuses
#     to install into the system Python, PEP 668); /usr/local/bin/tablemover links to its command
#   - /etc/systemd/system/tablemover@.service (ExecStart=/opt/tablemover/bin/tablemover)
#   - /etc/tablemover (root:tablemover 0750); with --move NAME also NAME.toml from the example,
#     NAME.source.pass and NAME.target.pass (root:root 0600, empty: the unit hands them to the daemon
#     with LoadCredential=) and hooks/NAME/ (root 0755:
#     hooks are code the daemon runs, so the daemon must not be able to change them)
#   - with --operator USER: USER joins the tablemover group, which may use the control sockets
#     (0660 in /run/tablemover, 0750) and read the config (not the password files)
#
# --root DIR puts every file under DIR instead of / and skips what would touch the running system
# (users, groups, ownership, systemctl); the tests use it. The venv it creates works only in place.
# --dry-run prints the commands without running them.
set -euo pipefail

PREFIX=/opt/tablemover
ETC=/etc/tablemover
UNIT_DIR=/etc/systemd/system
LINK=/usr/local/bin/tablemover
GROUP=tablemover
USER_NAME=tablemover

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root=""
dry=0
wheel=""
python="python3"
moves=()
operators=()

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    echo "usage: $0 [--wheel FILE] [--move NAME]... [--operator USER]... [--python PYTHON] [--root DIR] [--dry-run]"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --wheel) wheel="$2"; shift 2 ;;
        --move) moves+=("$2"); shift 2 ;;
        --operator) operators+=("$2"); shift 2 ;;
        --python) python="$2"; shift 2 ;;
        --root) root="$(realpath -m "$2")"; shift 2 ;;
        --dry-run) dry=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done

run() {
    echo "+ $*"
    if [ "$dry" = 0 ]; then "$@"; fi
}

say() { echo "install.sh: $*"; }

if [ -z "$wheel" ]; then
    # The newest wheel `make dist` built next to this script's checkout.
    wheel="$(ls -t "$here"/../dist/tablemover-*.whl 2>/dev/null | head -n 1 || true)"
    [ -n "$wheel" ] || { echo "install.sh: no dist/tablemover-*.whl: run \`make dist\` first, or pass --wheel FILE" >&2; exit 2; }
fi
[ -f "$wheel" ] || { echo "install.sh: wheel $wheel not found" >&2; exit 2; }
wheel="$(realpath "$wheel")"
for name in "${moves[@]+"${moves[@]}"}"; do
    [[ "$name" =~ ^[a-z0-9_]{1,32}$ ]] || { echo "install.sh: move name $name: use [a-z0-9_]{1,32}" >&2; exit 2; }
done
if [ -z "$root" ] && [ "$dry" = 0 ] && [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (sudo), or use --root DIR / --dry-run" >&2
    exit 2
fi
"$python" -c 'import ensurepip, venv' 2>/dev/null || {
    echo "install.sh: $python cannot create virtual environments: apt-get install python3-venv" >&2
    exit 2
}

# Ownership only on a real system: under --root the files belong to whoever runs the script.
own_root=()
own_group=()
if [ -z "$root" ]; then
    own_root=(-o root -g root)
    own_group=(-o root -g "$GROUP")
fi

# 1. The service account: a system user in its own group, which cannot log in.
if [ -n "$root" ]; then
    say "--root: not creating the $USER_NAME user and group"
else
    getent group "$GROUP" >/dev/null || run groupadd --system "$GROUP"
    getent passwd "$USER_NAME" >/dev/null ||
        run useradd --system --gid "$GROUP" --home-dir /nonexistent --no-create-home \
            --shell /usr/sbin/nologin "$USER_NAME"
fi

# 2. The program: a venv owned by root (the daemon cannot modify its own code).
[ -x "$root$PREFIX/bin/python" ] || run "$python" -m venv "$root$PREFIX"
run "$root$PREFIX/bin/pip" install --quiet --upgrade "$wheel"
run install -d -m 0755 "$root$(dirname "$LINK")"
run ln -sfn "$PREFIX/bin/tablemover" "$root$LINK"

# 3. The unit.
run install -d -m 0755 "$root$UNIT_DIR"
run install -m 0644 "${own_root[@]+"${own_root[@]}"}" "$here/tablemover@.service" "$root$UNIT_DIR/tablemover@.service"

# 4. Config, password files and hooks, readable by the daemon, writable by root only.
run install -d -m 0750 "${own_group[@]+"${own_group[@]}"}" "$root$ETC"
run install -d -m 0755 "${own_root[@]+"${own_root[@]}"}" "$root$ETC/hooks"
for name in "${moves[@]+"${moves[@]}"}"; do
    config="$root$ETC/$name.toml"
    if [ -e "$config" ]; then
        say "$ETC/$name.toml exists: left as it is"
    else
        tmp="$(mktemp)"
        sed -e "s|^name = \"orders\"|name = \"$name\"|" \
            -e "s|/etc/tablemover/hooks/orders\"|/etc/tablemover/hooks/$name\"|" \
            -e "s|/etc/tablemover/orders\\.|/etc/tablemover/$name.|" \
            "$here/move.example.toml" >"$tmp"
        run install -m 0640 "${own_group[@]+"${own_group[@]}"}" "$tmp" "$config"
        rm -f "$tmp"
    fi
    for side in source target; do
        pass="$root$ETC/$name.$side.pass"
        # Created empty; write the password into it (printf '%s\n' "$PW" > FILE keeps mode and owner).
        [ -e "$pass" ] || run install -m 0600 "${own_root[@]+"${own_root[@]}"}" /dev/null "$pass"
    done
    run install -d -m 0755 "${own_root[@]+"${own_root[@]}"}" "$root$ETC/hooks/$name"
done

# 5. Operators: the tablemover group may use the control sockets and read the config.
for person in "${operators[@]+"${operators[@]}"}"; do
    if [ -n "$root" ]; then
        say "--root: not adding $person to the $GROUP group"
    elif id -nG "$person" 2>/dev/null | tr ' ' '\n' | grep -qx "$GROUP"; then
        say "$person is already in the $GROUP group"
    else
        run usermod -a -G "$GROUP" "$person"
        say "$person must log in again for the group to take effect"
    fi
done

# 6. Tell systemd.
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
    run systemctl daemon-reload
fi

say "installed $(basename "$wheel") into $root$PREFIX"
for name in "${moves[@]+"${moves[@]}"}"; do
    say "next for move $name: edit $ETC/$name.toml, write $ETC/$name.source.pass and" \
        "$ETC/$name.target.pass, then: tablemover check -c $ETC/$name.toml &&" \
        "systemctl enable --now tablemover@$name"
done
