"""Build hook for the optional compiled inner loops (``kbioxlm._speedups``).

Everything else is declared in pyproject.toml. The extension is ``optional``: without a C
compiler the install still succeeds and the corpus builders use their pure-Python twins (same
output, slower; the summary line of ``kbioxlm corpus`` says which ran: ``inner_loops=``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("kbioxlm._speedups", ["src/kbioxlm/_speedups.c"], optional=True, extra_compile_args=["-O2"]),
    ]
)
