"""Only the compiled part of the package; everything else is in pyproject.toml. The fast lane is optional:
without a C compiler the install still succeeds and the proxy takes its Python path (`proxy.lane.COMPILED`)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("proxy._lane", ["proxy/_lane.c"], optional=True,
                             extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"])])
