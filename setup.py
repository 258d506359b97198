"""The compiled hot path (trunkline.native._hotpath); everything else is in pyproject.toml.

optional=True: where no C compiler is at hand the package still installs and the mover
runs its Python loop (trunkline.native says which one is in use).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "trunkline.native._hotpath",
            ["src/trunkline/native/_hotpath.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall"],
            optional=True,
        )
    ]
)
