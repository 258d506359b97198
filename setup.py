"""The compiled hot paths; everything else is in pyproject.toml.

trunkline.native._hotpath: the mover's per-part loops. trunkline.flows.sources._udp: the
collector's batch receive (recvmmsg). trunkline.flows.decode._columns: addresses to
text for the stored columns. optional=True: where no C compiler is at hand the
package still installs and each runs its Python loop (``NATIVE`` in each module's face
says which one is in use).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "trunkline.native._hotpath",
            ["src/trunkline/native/_hotpath.c", "src/trunkline/native/crc64nvme.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall"],
            libraries=["m"],   # modf/floor: an mtime split as os.utime splits it
            optional=True,
        ),
        Extension(
            "trunkline.flows.sources._udp",
            ["src/trunkline/flows/sources/_udp.c"],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall"],
            optional=True,
        ),
        Extension(
            "trunkline.flows.decode._columns",
            ["src/trunkline/flows/decode/_columns.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall"],
            optional=True,
        ),
    ]
)
