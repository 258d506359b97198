#!/bin/bash
# Build .devbin/ for a bare many-core device machine (no network there): Debian 12's nginx
# (the client-bound origin) and pmacct's nfacctd (the collector's peer, issue 15), each
# with every library it links except glibc's own (the device's newer glibc runs them),
# behind a wrapper script of the tool's name; and the shared flow captures. Run here, as
# root, after `make setup` (nginx and pmacct are among the Debian packages it installs).
# And the compiled modules built for CPython 3.12 (the device's Python; env.sh uses them
# where the device has no Python.h to build its own).
#
# Carry to the device: [".devbin"] for the collector (~40 MB), plus ".whl" for the mover's
# benchmarks (botocore and friends; keep the total under the 64 MiB a run may carry).
# `pack.sh --mover` packs for the mover's benchmarks alone: nginx without nfacctd and the
# captures, and rclone (the venv's, xz-compressed: 85 MB plain) so the peers are all there.
set -euo pipefail
cd "$(dirname "$0")/../.."
DEV=.devbin
SHARED=${TRUNKLINE_SHARED_DATA:-../shared/data}
tools="nginx nfacctd"
[ "${1:-}" = "--mover" ] && tools=nginx
rm -rf "$DEV"
mkdir -p "$DEV/lib" "$DEV/data"
for tool in $tools; do
    bin=$(command -v "$tool" || echo "/usr/sbin/$tool")
    [ -x "$bin" ] || { echo "pack: $tool not installed (make setup)" >&2; exit 1; }
    cp -f "$bin" "$DEV/$tool.real"
    # every resolved library but the C library's own pieces and the loader
    ldd "$bin" | awk '/=> \// {print $3}' \
        | grep -vE '/(libc|libm|libpthread|libdl|librt|libresolv)\.so' \
        | while read -r lib; do cp -fL "$lib" "$DEV/lib/"; done
    cat > "$DEV/$tool" <<EOF
#!/bin/sh
# Debian 12's $tool with the libraries it was linked against (carried to a bare machine).
here=\$(dirname "\$(readlink -f "\$0")")
LD_LIBRARY_PATH="\$here/lib" exec "\$here/$tool.real" "\$@"
EOF
    chmod +x "$DEV/$tool"
done
# the compiled modules for CPython 3.12 (the device's), where a 3.12 with headers is here
inc=""
for py in python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12; do
    inc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null) \
        && break || inc=""
done
if [ -n "$inc" ] && [ -f "$inc/Python.h" ]; then
    for mod in src/trunkline/native/_hotpath src/trunkline/flows/sources/_udp \
               src/trunkline/flows/decode/_columns; do
        gcc -O2 -std=gnu11 -Wall -fPIC -shared -I"$inc" "$mod.c" \
            -o "$DEV/$(basename "$mod").cpython-312-x86_64-linux-gnu.so" -lm
    done
else
    echo "pack: no CPython 3.12 headers here; the device builds the modules if it can" >&2
fi
# ISA-L (Debian libisal2), the CRC32C native/crc.py prefers, alone in its own folder so the
# Python side can take it without the tools' other libraries
mkdir -p "$DEV/crc"
isal=$(/sbin/ldconfig -p | awk '/libisal\.so\.2 / {print $NF; exit}')
if [ -n "$isal" ]; then cp -fL "$isal" "$DEV/crc/libisal.so.2"
else echo "pack: libisal2 not installed (scripts/system-deps.sh); the device sums with google-crc32c" >&2; fi
if [ "$tools" = nginx ]; then
    rclone=$(.venv/bin/python -c 'import sys; sys.path.insert(0, "src")
from trunkline.tools import find_tool; print(find_tool("rclone") or "")')
    [ -n "$rclone" ] && xz -T0 -6 -c "$rclone" > "$DEV/rclone.xz"
else
    cp -r "$SHARED/flows" "$DEV/data/flows"
    chmod -R u+w "$DEV/data"
fi
# every library resolves inside .devbin (glibc apart)
for tool in $tools; do
    if LD_LIBRARY_PATH="$DEV/lib" ldd "$DEV/$tool.real" | grep -q "not found"; then
        echo "pack: $tool has unresolved libraries" >&2; exit 1
    fi
done
du -sh "$DEV"
